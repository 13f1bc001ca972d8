#!/usr/bin/env bash
# Build the cargo-fuzz targets in fuzz/ and run each one in turn.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGET defaults to every target (`cargo fuzz list`).
# Targets run one at a time. Per target it prints executions, wall time and crashes, and
# for a crash the input (base64) and the panic message with its stack.
#
# Environment:
#   FUZZ_SOURCE=REV    the commit to fuzz (default HEAD), extracted with `git archive` into
#                      fuzz/snapshot/ (the fuzz crate's path dependency); `worktree` copies
#                      the working tree instead, uncommitted edits included. Pin a commit
#                      for a campaign of several calls: HEAD may move between them, and a
#                      later call would then extract and build the new HEAD
#   FUZZ_REBUILD=1     rebuild even when fuzz/snapshot/ already holds that commit
#   FUZZ_BUILD_ONLY=1  extract and build, then stop (before fuzzing anything)
#   FUZZ_RUNS=N        also stop a target after N executions (libFuzzer -runs); default: no cap
#   FUZZ_MAX_LEN=N     largest input libFuzzer generates (default 4096)
#   FUZZ_BUILD_JOBS=N  cargo build jobs (default 1: the build machine is small and shared)
#   FUZZ_SANITIZER=S   build with `cargo fuzz build -s S` (default address: AddressSanitizer).
#                      `none` runs about 3x faster: for safe Rust it loses only ASan's checks
#                      of unsafe code and of C dependencies; -O -a still apply (debug
#                      assertions and overflow checks stay on). A sanitizer other than
#                      address builds into fuzz/target/sanitizer-S/ and logs to
#                      fuzz/logs/TARGET.S.log, so both builds can be used side by side
#   FUZZ_EXTRA="..."   more libFuzzer flags, e.g. "-only_ascii=1"
#
# Several instances may run at once (different targets, or the same commit with another
# sanitizer): the snapshot is extracted under an exclusive lock and read under a shared
# one (fuzz/target/.fuzz-snapshot-lock), and each build dir is built under its own lock
# (TARGET_DIR/.fuzz-build-lock), so a second instance waits for the first's build and then
# finds it done. Edit this script only by replacing it (write a copy, `mv` it over): bash
# reads a running script as it goes.
#
# Needs Rust nightly and cargo-fuzz (`cargo install cargo-fuzz`). Seeds are tracked in
# fuzz/seeds/<target>/; libFuzzer reads them and writes what it finds to the scratch
# corpus fuzz/corpus/<target>/, crashes to fuzz/artifacts/<target>/, logs to fuzz/logs/
# (all three ignored by git).
set -euo pipefail

secs=${1:-60}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz="$root/fuzz"
cd "$fuzz"

san=${FUZZ_SANITIZER:-address}
case "$san" in
    address | none | memory | thread | leak) ;;
    *) echo "FUZZ_SANITIZER: unknown sanitizer '$san' (address, none, memory, thread, leak)" >&2; exit 2 ;;
esac
# the address build keeps cargo-fuzz's default target dir; any other gets its own
if [ "$san" = address ]; then
    tdir="$fuzz/target"
    tdir_args=()
    logsuffix=""
else
    tdir="$fuzz/target/sanitizer-$san"
    tdir_args=(--target-dir "$tdir")
    logsuffix=".$san"
fi
bin="$tdir/x86_64-unknown-linux-gnu/release"

# One extraction at a time, and none while another instance builds from the snapshot:
# the snapshot is read (checked, built from) under a shared lock, replaced under an
# exclusive one.
mkdir -p "$tdir"
exec 9>"$fuzz/target/.fuzz-snapshot-lock"
flock -s 9

# The crate under test: a snapshot of one commit, so edits in progress neither break the
# build nor change the code between targets.
source=${FUZZ_SOURCE:-HEAD}
if [ "$source" = worktree ]; then
    id="worktree-$(date +%s)"
else
    id=$(git -C "$root" rev-parse --verify "$source^{commit}")
fi
if [ "${FUZZ_REBUILD:-0}" = 1 ] || [ "$(cat snapshot/.fuzz-source 2>/dev/null)" != "$id" ]; then
    flock -x 9 # not atomic: it lets go of the shared lock first
fi
if [ "${FUZZ_REBUILD:-0}" = 1 ] || [ "$(cat snapshot/.fuzz-source 2>/dev/null)" != "$id" ]; then
    echo "== snapshot of $source ($id) in fuzz/snapshot/"
    rm -rf snapshot
    mkdir snapshot
    if [ "$source" = worktree ]; then
        tar -C "$root" --exclude=./target --exclude=./fuzz --exclude=./.git -cf - . | tar -C snapshot -xf -
    else
        git -C "$root" archive --format=tar "$id" -- . ':(exclude)fuzz' | tar -C snapshot -xf -
    fi
    echo "$id" >snapshot/.fuzz-source
    flock -s 9
else
    echo "== fuzz/snapshot/ already holds $id (FUZZ_REBUILD=1 extracts it again)"
fi
# -O: optimised; -a: debug assertions and overflow checks on, so arithmetic overflow panics.
# Skipped when neither the snapshot nor the fuzz crate changed since the last build (the
# crate's build script watches .git/HEAD, which a snapshot lacks, so cargo would always
# recompile it).
build_id() { (echo "$id $san"; cat Cargo.toml Cargo.lock fuzz_targets/*.rs) | sha256sum | cut -c1-16; }
exec 8>"$tdir/.fuzz-build-lock"
flock -x 8
if [ "${FUZZ_REBUILD:-0}" = 1 ] || [ "$(cat "$tdir/.fuzz-build" 2>/dev/null)" != "$(build_id)" ]; then
    echo "== building fuzz targets (sanitizer: $san, jobs: ${FUZZ_BUILD_JOBS:-1})"
    CARGO_BUILD_JOBS=${FUZZ_BUILD_JOBS:-1} cargo +nightly fuzz build -O -a -s "$san" "${tdir_args[@]}"
    # after the build: it may have rewritten Cargo.lock, which the next check reads
    build_id >"$tdir/.fuzz-build"
else
    echo "== fuzz targets already built for this snapshot (sanitizer: $san)"
fi
exec 8>&- 9>&-
if [ "${FUZZ_BUILD_ONLY:-0}" = 1 ]; then
    echo "== built (FUZZ_BUILD_ONLY=1): $bin"
    exit 0
fi
echo "== fuzzing vllm-loadtest at $id (sanitizer: $san)"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

mkdir -p logs
summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
    log="logs/$t$logsuffix.log"
    before=$(ls "artifacts/$t" | sort)
    runs=()
    [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
    echo "== $t: up to ${secs}s${FUZZ_RUNS:+ or $FUZZ_RUNS executions}"
    start=$(date +%s)
    set +e
    # the built binary is run directly (`cargo fuzz run` would rebuild first)
    # shellcheck disable=SC2086
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0} "$bin/$t" \
        -artifact_prefix="artifacts/$t/" "corpus/$t" "seeds/$t" \
        -max_total_time="$secs" "${runs[@]}" -max_len="${FUZZ_MAX_LEN:-4096}" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_EXTRA:-} \
        >"$log" 2>&1
    rc=$?
    set -e
    wall=$(( $(date +%s) - start ))
    stat_of() { { grep -o "$1" "$log" || true; } | tail -1 | { grep -o '[0-9]*$' || true; }; }
    execs=$(stat_of 'stat::number_of_executed_units: *[0-9]*')
    rate=$(stat_of 'stat::average_exec_per_sec: *[0-9]*')
    cov=$(stat_of 'cov: [0-9]*')
    new=$(comm -13 <(echo "$before") <(ls "artifacts/$t" | sort) | grep -v '^$' || true)
    crashes=$(printf '%s' "$new" | grep -c . || true)
    line="$t: executions ${execs:-?} (${rate:-?}/s), wall ${wall}s, coverage ${cov:-?}, crashes ${crashes}, exit ${rc}"
    echo "$line"
    summary+=("$line")
    if [ "$crashes" -gt 0 ] || [ "$rc" -ne 0 ]; then
        status=1
        for a in $new; do
            echo "-- crashing input artifacts/$t/$a (base64):"
            base64 -w0 "artifacts/$t/$a"
            echo
        done
        echo "-- panic message and stack (from $log):"
        grep -A40 -m1 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | head -60 || tail -40 "$log"
    fi
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
echo "Reproduce a crash: ${bin#"$root/"}/TARGET fuzz/artifacts/TARGET/crash-…"
exit $status
