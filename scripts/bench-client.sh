#!/usr/bin/env bash
# Whole-process client benchmark: the `zero` simulator pinned to one core, `bench` pinned to
# the other, a sweep of request rates. Prints, per rate: achieved throughput, TTFT p50/p99,
# send lag p99, client CPU share, peak RSS and memory gained per request sent. Loopback only; every process it starts it stops.
#
# Usage: scripts/bench-client.sh [RATES...]    (default: 500 1000 2000 3000 4000 5000)
# Env:   DURATION=5  OUT_LEN=64  IN_LEN=32  PORT=18765  BIN=target/release/vllm-loadtest
#        TLS=1: the simulator serves https with a self-signed certificate made here by
#        `openssl`, and the client trusts it with `--ca-cert` (the TLS ceiling)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/vllm-loadtest}
DURATION=${DURATION:-5}
OUT_LEN=${OUT_LEN:-64}
IN_LEN=${IN_LEN:-32}
PORT=${PORT:-18765}
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(500 1000 2000 3000 4000 5000)
[ -x "$BIN" ] || cargo build --release
WORK=$(mktemp -d /tmp/bench-client.XXXXXX)

SCHEME=http
SIM_TLS=()
CLIENT_TLS=()
if [ "${TLS:-0}" = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2> /dev/null
  SCHEME=https
  SIM_TLS=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")
  CLIENT_TLS=(--ca-cert "$WORK/cert.pem")
fi

taskset -c 1 "$BIN" sim --profile zero --port "$PORT" --served-model-name m "${SIM_TLS[@]}" 2> "$WORK/sim.log" &
SIM=$!
trap 'kill "$SIM" 2>/dev/null; wait "$SIM" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  curl -sfk "$SCHEME://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 0.1
done

printf '%-8s %-10s %-10s %-10s %-12s %-9s %-9s %-10s %s\n' rate achieved ttft_p50 ttft_p99 sendlag_p99 cpu% rss_MB B/request pacer_rt
for r in "${RATES[@]}"; do
  out="$WORK/r$r"
  taskset -c 0 "$BIN" bench --base-url "$SCHEME://127.0.0.1:$PORT" --model m "${CLIENT_TLS[@]}" \
    --random-input-len "$IN_LEN" --random-output-len "$OUT_LEN" --num-prompts 1000 \
    --request-rate "$r" --duration "$DURATION" --quiet --output-dir "$out" > /dev/null 2> "$out.err" || true
  python3 - "$out/summary.json" "$r" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
o = s["vllm_loadtest"]
l = o["summary"]["latencies"]
c = o["client"]
q = l["queue_delay_ms"]["p99"] if l.get("queue_delay_ms") else float("nan")
print(f'{sys.argv[2]:<8} {s["request_throughput"]:<10.1f} {s["median_ttft_ms"]:<10.3f} {s["p99_ttft_ms"]:<10.3f} {q:<12.3f} {100*c["cpu_share_of_threads"]:<9.0f} {c["max_rss_bytes"]/1e6:<9.1f} {c.get("rss_growth_per_request_bytes") or float("nan"):<10.0f} {c.get("pacer_realtime")}')
PY
done
