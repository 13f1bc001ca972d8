#!/usr/bin/env bash
# Fault soak (not in CI's default path): `run` drives the simulator at ~1,000 req/s with
# every fault kind on, the server is killed (-9) and the run resumed twice, and then every
# cell is checked: no panic, `sent = ok + failed + cancelled` exact, the client's memory per
# request flat across cells, and no process of ours left.
#
#   scripts/soak.sh [SECONDS_PER_CELL=60] [CELLS=10]      (10 minutes by default)
#
# Needs a release build (`cargo build --release`) and python3. Talks to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
CELL_S=${1:-60}
CELLS=${2:-10}
BIN=$PWD/target/release/vllm-loadtest
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /tmp/vlt-soak.XXXXXX)
MARK="vlt-soak-$$"
cleanup() { pkill -9 -f "$MARK" 2>/dev/null || true; }
trap cleanup EXIT

# one load point repeated: each repeat its own cell, with its own arrivals
cat > "$WORK/soak.yaml" <<EOF
name: soak
repeats: $CELLS
server:
  launcher: command
  command: exec $BIN sim --port {port} --profile zero --fault-rate 0.02 --faults refuse,http500,http429,http503,stall,drop-midstream,malformed --served-model-name $MARK
  start_timeout_s: 30
workload:
  input_len: 64
  output_len: 32
  num_prompts: 2000
load:
  request_rate: 1000
  duration_s: $CELL_S
  warmup_s: 2
  cooldown_s: 2
  request_timeout_s: 10
  drain_timeout_s: 30
EOF

status=0
start=$(date +%s)
# kill the server once in the second cell and once in the fifth (or the last)
kill_at() {
  local cell=$1
  (
    while :; do
      n=$(ls "$WORK"/results/soak/*/cells 2>/dev/null | wc -l || true)
      if [ "${n:-0}" -ge "$cell" ]; then
        sleep $((CELL_S / 2))
        pkill -9 -f "sim --port .* $MARK" && echo "soak: killed the server during cell $cell"
        exit 0
      fi
      sleep 1
    done
  ) &
}
kill_at 2
"$BIN" run "$WORK/soak.yaml" --output "$WORK/results" --quiet > "$WORK/run1.log" 2>&1 || status=$?
echo "soak: first run exited $status"
DIR=$(ls -d "$WORK"/results/soak/*)
for round in 2 3; do
  [ "$round" = 2 ] && kill_at $(( CELLS < 5 ? CELLS : 5 ))
  rc=0
  "$BIN" run --resume "$DIR" --quiet > "$WORK/run$round.log" 2>&1 || rc=$?
  echo "soak: resume $((round - 1)) exited $rc"
  [ "$rc" = 0 ] && break
done
wait || true
end=$(date +%s)

python3 - "$DIR" "$WORK" <<'PY'
import json, glob, os, sys
d, work = sys.argv[1], sys.argv[2]
logs = "".join(open(f).read() for f in glob.glob(work + "/run*.log"))
bad = []
if "panicked" in logs:
    bad.append("a panic in the logs")
rows = []
for c in sorted(glob.glob(d + "/cells/*")):
    s = json.load(open(c + "/summary.json"))["vllm_loadtest"]
    m, st = s["summary"], json.load(open(c + "/status.json"))["status"]
    # a finished cell's records are in requests.parquet (its journal retired); a cut one's
    # only in its requests.jsonl journal
    if os.path.exists(c + "/requests.parquet"):
        import pyarrow.parquet as pq
        lines = pq.ParquetFile(c + "/requests.parquet").metadata.num_rows
    else:
        lines = sum(1 for _ in open(c + "/requests.jsonl"))
    ok = m["sent"] == m["ok"] + m["failed"] + m["cancelled"] == lines
    if not ok:
        bad.append(f"{os.path.basename(c)}: accounting")
    rows.append((os.path.basename(c), st, m["sent"], m["ok"], m["failed"], m["cancelled"],
                 m.get("resent", 0), s["client"].get("rss_growth_per_request_bytes"),
                 s["client"]["max_rss_bytes"] / 1e6))
print("| cell | status | sent | ok | failed | cancelled | resent | B/request | max RSS MB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print("| " + " | ".join(str(x if not isinstance(x, float) else round(x, 1)) for x in r) + " |")
complete = [r for r in rows if r[1] == "complete"]
per_req = [r[7] for r in complete if r[7]]
if per_req and max(per_req) > 4 * max(1.0, min(per_req)) + 2000:
    bad.append(f"client memory per request not flat: {min(per_req):.0f}..{max(per_req):.0f} B")
m = json.load(open(d + "/manifest.json"))
print(f"\nmanifest: {m['status']}, {m['cells_complete']} of {len(rows)} cells complete")
if m["status"] != "complete":
    bad.append("the run did not complete after its resumes")
print("\nsoak: " + ("FAILED: " + "; ".join(bad) if bad else "passed"))
sys.exit(1 if bad else 0)
PY
checks=$?
left=$(pgrep -f "$MARK" || true)
if [ -n "$left" ]; then echo "soak: processes left: $left"; checks=1; fi
echo "soak: $((end - start)) s"
exit $checks
