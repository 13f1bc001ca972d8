#!/usr/bin/env bash
# Many concurrent streams (issue 6): the `zero` simulator with a fixed step time pinned to
# one core, `bench` pinned to the other. Two scenarios:
#   1024: a closed loop of 1,024 streams, 10 ms between tokens, 128 tokens each, for
#         DURATION s (ideal: 800 req/s, ITL 10 ms). Keep DURATION ≥ 30: the streams end in
#         waves of 1,024, and a short window miscounts by one wave (bench warns).
#   10k:  10,000 requests sent at once, 100 ms between tokens, 16 tokens each.
# Prints achieved req/s, TTFT/ITL p50, errors, client CPU share and RSS. Loopback only;
# every process it starts it stops.
#
# Usage: scripts/bench-streams.sh [1024|10k ...]   (default: both)
# Env:   DURATION=32  PORT=18766  BIN=target/release/vllm-loadtest
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/vllm-loadtest}
DURATION=${DURATION:-32}
PORT=${PORT:-18766}
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(1024 10k)
[ -x "$BIN" ] || cargo build --release
WORK=$(mktemp -d /tmp/bench-streams.XXXXXX)
SIM=
cleanup() {
  [ -n "$SIM" ] && kill "$SIM" 2>/dev/null && wait "$SIM" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

start_sim() { # step ms
  taskset -c 1 "$BIN" sim --profile zero --c0-ms "$1" --port "$PORT" --served-model-name m \
    2> "$WORK/sim.log" &
  SIM=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return
    sleep 0.1
  done
  echo "simulator did not start" >&2
  exit 1
}

stop_sim() {
  kill "$SIM" 2>/dev/null || true
  wait "$SIM" 2>/dev/null || true
  SIM=
}

report() { # name dir
  python3 - "$1" "$2/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[2]))
o = s["vllm_loadtest"]
c = o["client"]
print(f'{sys.argv[1]:<6} {s["request_throughput"]:>9.1f} {s["median_ttft_ms"]:>10.2f} {s["median_itl_ms"]:>9.3f} '
      f'{o["summary"]["failed"]:>6} {100*c["cpu_share_of_threads"]:>6.0f} {c["max_rss_bytes"]/1e6:>8.1f}')
for w in o["warnings"]:
    print(f'       warning: {w}')
PY
}

printf '%-6s %9s %10s %9s %6s %6s %8s\n' case 'req/s' 'TTFT p50' 'ITL p50' failed 'cpu%' 'RSS MB'
for c in "${CASES[@]}"; do
  case "$c" in
    1024)
      start_sim 10
      taskset -c 0 "$BIN" bench --base-url "http://127.0.0.1:$PORT" --model m \
        --random-input-len 32 --random-output-len 128 --max-concurrency 1024 \
        --request-rate inf --duration "$DURATION" --warmup 2 --quiet \
        --output-dir "$WORK/1024" > /dev/null 2> "$WORK/1024.err" || true
      stop_sim
      report 1024 "$WORK/1024"
      ;;
    10k)
      start_sim 100
      taskset -c 0 "$BIN" bench --base-url "http://127.0.0.1:$PORT" --model m \
        --random-input-len 32 --random-output-len 16 --num-prompts 10000 \
        --request-rate inf --quiet --output-dir "$WORK/10k" > /dev/null 2> "$WORK/10k.err" || true
      stop_sim
      report 10k "$WORK/10k"
      ;;
    *)
      echo "unknown case \`$c\` (1024 or 10k)" >&2
      exit 2
      ;;
  esac
done
