#!/usr/bin/env bash
# The seed's scaling study in virtual time, end to end (issue 15's target: ≤ 10 s of wall
# time for all 24 cells, report included): `run examples/scaling.yaml` with
# `server.clock=virtual`, then `aggregate` alone on its folder (the stage that reads every
# cell's events back). Prints each repeat's wall time and the median of both, so a
# regression anywhere on the way (prompts, the engine, the Parquet writers and readers, the
# report) shows as a number. Starts no server; writes only under a temporary folder it
# removes.
#
# Usage: scripts/bench-virtual-run.sh   Env: REPEATS=3  BIN=target/release/vllm-loadtest
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/vllm-loadtest}
REPEATS=${REPEATS:-3}
[ -x "$BIN" ] || cargo build --release
WORK=$(mktemp -d /tmp/bench-virtual-run.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

seconds() { # command...: its wall time in seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$WORK/out.log" 2>&1 || { cat "$WORK/out.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

runs=() aggs=()
for i in $(seq 1 "$REPEATS"); do
  r=$(seconds "$BIN" run examples/scaling.yaml --set server.clock=virtual --output "$WORK/r$i")
  dir=$(ls -d "$WORK/r$i"/*/*)
  a=$(seconds "$BIN" aggregate "$dir")
  printf 'repeat %d: run %.2f s, aggregate %.2f s\n' "$i" "$r" "$a"
  runs+=("$r") aggs+=("$a")
  rm -rf "$WORK/r$i"
done
printf 'median over %d: run %.2f s (target ≤ 10 s), aggregate %.2f s; %d cores\n' "$REPEATS" \
  "$(printf '%s\n' "${runs[@]}" | median)" "$(printf '%s\n' "${aggs[@]}" | median)" "$(nproc)"
