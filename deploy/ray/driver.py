#!/usr/bin/env python3
"""Run one vllm-loadtest load point from several machines of a Ray cluster.

    python3 deploy/ray/driver.py --address HEAD:6379 --shards N --out OUT -- BENCH_ARGS...

What it does, in order:

1. Reserves one bundle of `--task-cpus` CPUs per shard in a placement group:
   STRICT_SPREAD (one shard per node) when there are at least N alive nodes,
   else SPREAD (best effort: some nodes run more than one shard). The group
   is reserved whole or not at all, so every shard can start at once.
2. Probes each bundle's node: host, CPU architecture, and whether a
   `vllm-loadtest` of the driver's exact version (`--version`, which names
   the commit) is there; if not, the driver's own binary is shipped through
   the object store (one copy, fetched only by the nodes that need it).
3. Measures each node's clock against the driver's by a task round trip and
   says so (the shards themselves refuse to run on a clock the kernel calls
   unsynchronised or off by more than `--max-clock-error-ms`).
4. Picks the common start instant T = now + `--start-delay` and runs
   `vllm-loadtest bench BENCH_ARGS --shard i/N --start-at T --output-dir TMP`
   on each node, in its own process group, killed with its task.
5. Unpacks each shard's cell folder into OUT/shards/shard-<i>/, its output
   into OUT/logs/, the plan into OUT/driver.json, runs
   `vllm-loadtest merge OUT/shards/shard-* -o OUT/merged` (with
   `--max-clock-error-ms`/`--max-start-late-ms` when given) and prints the
   merged cell's path as the last line of stdout. Progress and merge's table
   go to stderr.

A failing shard cancels the others and fails the driver with that shard's own
error text. Ctrl-C or SIGTERM cancels every shard (its bench process group is
killed) and exits 130 or 143. Nothing is left on the nodes: each shard works in
a temporary folder that its task removes, or its reaper process if the task's
Ray worker is killed first (see REAPER).

Set VLLM_LOADTEST_RAY_LOOPBACK=1 only for a single-machine test cluster kept on
127.0.0.1 (see test_two_nodes.py and loopback_ray()).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time

TOOL = "vllm-loadtest"

# Flags the driver sets on every shard itself; taking them from BENCH_ARGS too
# would either clash with the driver's value or make the shards disagree.
OWNED_FLAGS = {
    "--shard": "the driver gives each task its own `--shard i/N`",
    "--start-at": "the driver picks the common start instant (see `--start-delay`)",
    "--output-dir": "the driver collects each shard's cell into `--out`",
    "--max-clock-error-ms": "pass it to the driver: `--max-clock-error-ms MS` before `--`",
    "--sim": "each shard would start its own simulator: that is N servers, not one load point; "
    "start `vllm-loadtest sim` once and pass `--base-url`",
    "--sim-dp": "see `--sim`",
    "--search": "a search runs many load points one after the other; run the driver once per rate",
    "--save-result": "the file would be written on the node and removed with its temp folder; "
    "the merged cell folder holds every figure",
    "--result-dir": "see `--save-result`",
    "--result-filename": "see `--save-result`",
}

# How long a cancelled shard's bench may take to exit on SIGTERM before SIGKILL.
KILL_GRACE_S = 5.0
# How long the driver waits for cancelled tasks to clean up before killing their workers.
CANCEL_GRACE_S = 15.0
STDERR_TAIL_BYTES = 4000


class UsageError(Exception):
    """A mistake in the command line: exit 2."""


class Failure(Exception):
    """The run failed: exit 1, the message is printed as is."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: cancel every shard, exit 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# The signal handler only records the signal: raising from inside Ray's C calls
# (ray.wait checks signals) corrupts them. The waiting loops look here.
_SIGNALLED: list[int] = []


def check_signals() -> None:
    if _SIGNALLED:
        raise Interrupted(_SIGNALLED[0])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Code that runs on the nodes (as Ray tasks). It imports what it needs itself
# and touches no driver state: cloudpickle ships these functions by value.
# --------------------------------------------------------------------------


def _version_of(path: str) -> str | None:
    try:
        out = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.decode(errors="replace").strip()


def probe_node(preferred: str | None, want_version: str, ship: str) -> dict:
    """Who and where this bundle is, and which binary a shard would run here."""
    import ray

    found = None
    candidates = []
    if preferred:
        candidates.append(preferred)
    on_path = shutil.which(TOOL)
    if on_path:
        candidates.append(on_path)
    seen = []
    if ship != "always":
        for cand in candidates:
            if cand in seen or not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
                continue
            version = _version_of(cand)
            seen.append(f"{cand} ({version or 'no --version'})")
            if version == want_version:
                found = cand
                break
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "system": platform.system(),
        "binary": found,
        "other_binaries": seen,
    }


def node_clock() -> float:
    return time.time()


def _die_with_parent():
    """A preexec_fn: the child gets SIGKILL if the worker that started it dies
    (a forced cancel or a dead driver kills the worker without running our
    cleanup). Linux only; elsewhere None and the process group kill has to do."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def pre():
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the worker died before prctl took effect
            os._exit(1)

    return pre


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the bench's process group, SIGKILL it after a grace period.
    A second cancel arriving meanwhile (KeyboardInterrupt) only hurries it."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                if proc.wait(timeout=0.1) is not None:
                    # The leader is gone; sweep anything else left in its group.
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    return
            except subprocess.TimeoutExpired:
                continue
            except KeyboardInterrupt:
                break


def _tail(path: str, limit: int = STDERR_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return ""
    text = data.decode(errors="replace")
    return ("…" + text) if size > limit else text


# Watches one shard task from outside its Ray worker. The worker holds the write
# end of a pipe to it and writes the bench's process-group id once started and
# `exited` once reaped. When the pipe closes (the task ended, or its worker was
# killed: a forced cancel, a dead driver) the reaper kills that process group
# unless it exited, and removes the shard's temp folder. So a worker that dies
# without running its own cleanup still leaves nothing behind. It forks away
# first: a dying Ray worker kills its direct children (the bench among them),
# and the reaper must outlive it.
REAPER = r"""
import os, shutil, signal, sys, time
if os.fork() > 0:
    os._exit(0)
fd, work = int(sys.argv[1]), sys.argv[2]
data = b""
while True:
    chunk = os.read(fd, 256)
    if not chunk:
        break
    data += chunk
words = data.split()
if words and words[-1] != b"exited":
    pgid = int(words[-1])
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
shutil.rmtree(work, ignore_errors=True)
"""


def run_shard(spec: dict) -> dict:
    """Run one shard's bench on this node and return its cell folder as a tar."""
    import tempfile

    import ray

    shard, shards = spec["shard"], spec["shards"]
    result = {
        "shard": shard,
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
        "binary": None,
        "exit_code": None,
        "error": None,
        "stderr_tail": "",
        "stdout": "",
        "stderr": "",
        "tar": None,
        "ready_before_start_s": None,
        "wall_s": None,
    }
    work = tempfile.mkdtemp(prefix=f"{TOOL}-shard{shard}-")
    proc = None
    watch_r, watch_w = os.pipe()  # both ends close-on-exec: the bench inherits neither
    try:
        reaper = subprocess.Popen(
            [sys.executable, "-c", REAPER, str(watch_r), work],
            pass_fds=(watch_r,),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives a kill of the worker's process group
        )
        reaper.wait()  # the first fork only: the reaper itself runs on
        os.close(watch_r)
        watch_r = None
        binary = spec["binary"]
        if binary is None:
            (ref,) = spec["ship"]  # wrapped in a list so only this path fetches it
            data = ray.get(ref)
            binary = os.path.join(work, TOOL)
            with open(binary, "wb") as f:
                f.write(data)
            del data
            os.chmod(binary, 0o755)
            result["binary"] = "shipped"
        else:
            result["binary"] = binary
        cell = os.path.join(work, "cell")
        cmd = [binary, "bench", *spec["bench_args"]]
        cmd += ["--shard", f"{shard}/{shards}", "--start-at", spec["start_at_arg"]]
        if spec["max_clock_error_ms"] is not None:
            cmd += ["--max-clock-error-ms", spec["max_clock_error_ms"]]
        cmd += ["--output-dir", cell]
        env = dict(os.environ)
        env.update(spec["env"])
        ready = time.time()
        result["ready_before_start_s"] = spec["start_at"] - ready
        if ready >= spec["start_at"]:
            result["error"] = (
                f"shard {shard}/{shards} was ready {ready - spec['start_at']:.1f} s after the "
                f"common start instant (binary {result['binary']})\n"
                "hint: raise `--start-delay`"
            )
            return result
        out_path = os.path.join(work, "stdout.log")
        err_path = os.path.join(work, "stderr.log")
        started = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(
                    cmd,
                    cwd=work,  # anything the bench writes by a relative path goes away with `work`
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(),
                )
            except OSError as e:
                hint = ""
                if result["binary"] == "shipped":
                    hint = (
                        "\nhint: the temp folder may be mounted noexec: set TMPDIR for "
                        "`ray start` on that node, or install the binary there"
                    )
                result["error"] = f"cannot run `{binary}`: {e}{hint}"
                return result
        os.write(watch_w, f"{proc.pid}\n".encode())
        # Poll rather than block: Ray's cancel raises KeyboardInterrupt in this
        # thread, and only between Python bytecodes.
        while True:
            try:
                rc = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if spec["timeout_at"] is not None and time.time() > spec["timeout_at"]:
                    _kill_group(proc)
                    result["error"] = (
                        f"shard {shard}/{shards} still running at the driver's `--timeout`; killed"
                    )
                    result["stderr_tail"] = _tail(err_path)
                    return result
        os.write(watch_w, b"exited\n")
        result["wall_s"] = time.monotonic() - started
        result["exit_code"] = rc
        result["stdout"] = _tail(out_path, 1 << 20)
        result["stderr"] = _tail(err_path, 1 << 20)
        result["stderr_tail"] = _tail(err_path)
        if rc == 0 and os.path.isdir(cell):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(cell, arcname=".")
            result["tar"] = buf.getvalue()
        elif rc == 0:
            result["error"] = f"exited 0 but wrote no cell folder at `{cell}`"
        return result
    finally:
        if proc is not None and proc.poll() is None:
            _kill_group(proc)
        if proc is not None and proc.returncode is not None:
            try:
                os.write(watch_w, b"exited\n")
            except OSError:
                pass
        shutil.rmtree(work, ignore_errors=True)
        for fd in (watch_r, watch_w):
            if fd is not None:
                os.close(fd)  # the reaper sees EOF, finds nothing left to do, exits


# --------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------


def parse_args(argv: list[str]):
    if "--" in argv:
        cut = argv.index("--")
        own, bench = argv[:cut], argv[cut + 1 :]
    else:
        own, bench = argv, []
    p = argparse.ArgumentParser(
        prog="driver.py",
        description="Run one vllm-loadtest load point from several machines of a Ray cluster: "
        "N shards of one schedule, started at one wall-clock instant, merged into one cell.",
        usage="%(prog)s --address ADDR --shards N --out OUT [options] -- BENCH_ARGS...",
        epilog="BENCH_ARGS are `vllm-loadtest bench` flags, the same on every shard; paths in "
        "them are read on each node. Example:\n  python3 deploy/ray/driver.py --address "
        "10.0.0.1:6379 --shards 4 --out results/rate-40 -- --base-url http://10.0.0.9:8000 "
        "--model meta-llama/Llama-3.1-8B-Instruct --request-rate 40 --num-prompts 4000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--address", required=True, help="the Ray cluster's GCS address, `HOST:PORT` (as given to `ray start --address`), or `auto`")
    p.add_argument("--shards", required=True, type=int, metavar="N", help="how many shards (Ray tasks) to split the load point into")
    p.add_argument("--out", required=True, metavar="DIR", help="where to put shards/, logs/, driver.json and merged/ (must not hold a previous run)")
    p.add_argument("--binary", metavar="PATH", help=f"the `{TOOL}` to use: on the driver (for merge and shipping) and on each node when there with the same `--version` (default: `{TOOL}` on PATH)")
    p.add_argument("--ship", choices=["auto", "always", "never"], default="auto", help="send the driver's binary to the nodes: `auto` where the node has none of the same version (default), `always`, or `never` (fail instead)")
    p.add_argument("--start-delay", type=float, default=10.0, metavar="S", help="the common start instant is this many seconds after the shards are placed and probed: long enough for each node to fetch the binary and build its prompts (default: 10)")
    p.add_argument("--max-clock-error-ms", metavar="MS", help="passed to every shard, which refuses to run when its kernel calls its clock unsynchronised or off by more than MS, and to `merge`, which flags such a shard (their default: 100; `inf` turns both off: one machine, one clock)")
    p.add_argument("--max-start-late-ms", metavar="MS", help="passed to `merge`: flag a shard that started later than this after the start instant (merge's default: 10)")
    p.add_argument("--task-cpus", type=float, default=1.0, metavar="C", help="CPUs reserved per shard in the placement group (default: 1)")
    p.add_argument("--min-nodes", type=int, default=1, metavar="K", help="wait (up to `--place-timeout`) until at least K nodes are alive before placing (default: 1)")
    p.add_argument("--place-timeout", type=float, default=120.0, metavar="S", help="how long to wait for the nodes and the placement group (default: 120)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="kill every shard still running this many seconds after the start instant (default: none)")
    p.add_argument("--forward-env", action="append", default=[], metavar="NAME", help="copy this environment variable from the driver to every shard (e.g. the one named by `--api-key-env`); its value travels through Ray. Repeatable")
    args = p.parse_args(own)
    if args.shards < 1:
        raise UsageError("`--shards` must be at least 1")
    if args.start_delay <= 0:
        raise UsageError("`--start-delay` must be positive")
    if args.task_cpus <= 0:
        raise UsageError("`--task-cpus` must be positive (each shard holds a bundle of it)")
    if not bench:
        raise UsageError(
            "no bench flags after `--`\nhint: e.g. `-- --base-url http://HOST:8000 "
            "--request-rate 10 --num-prompts 500`"
        )
    for a in bench:
        name = a.split("=", 1)[0]
        if name in OWNED_FLAGS or any(name == f"--{n}" for n in ("search-start", "search-min", "search-max")):
            why = OWNED_FLAGS.get(name, OWNED_FLAGS["--search"])
            raise UsageError(f"`{name}` cannot be among the bench flags: {why}")
    for name in args.forward_env:
        if name not in os.environ:
            raise UsageError(f"`--forward-env {name}`: `{name}` is not set in the driver's environment")
    return args, bench


def resolve_local_binary(binary: str | None) -> tuple[str, str]:
    path = binary or shutil.which(TOOL)
    if not path:
        raise UsageError(f"no `{TOOL}` on PATH\nhint: pass `--binary PATH`")
    path = os.path.abspath(os.path.expanduser(path))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise UsageError(f"`{path}` is not an executable file")
    version = _version_of(path)
    if not version:
        raise Failure(f"error: `{path} --version` failed")
    help_text = subprocess.run(
        [path, "bench", "--help"], capture_output=True, check=False, timeout=30
    ).stdout.decode(errors="replace")
    merge = subprocess.run([path, "merge", "--help"], capture_output=True, check=False, timeout=30)
    if "--shard" not in help_text or "--start-at" not in help_text or merge.returncode != 0:
        raise Failure(
            f"error: `{path}` ({version}) has no `bench --shard`/`--start-at` or no `merge`\n"
            "hint: build a newer vllm-loadtest"
        )
    return path, version


def rfc3339(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_out(out: str) -> None:
    """Refuse a used `--out` before anything runs (it is created when the shards are back)."""
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise UsageError(f"`--out {out}` exists and is not a folder")
        if os.listdir(out):
            raise UsageError(f"`--out {out}` is not empty\nhint: give each run its own folder")


class Driver:
    def __init__(self, args, bench_args, ray):
        self.args = args
        self.bench_args = bench_args
        self.ray = ray
        self.pg = None
        self.refs: list = []
        self._remotes: dict = {}

    # -- waiting in small steps, so Ctrl-C and SIGTERM are handled promptly --

    def wait_all(self, refs, timeout: float | None, what: str) -> None:
        ray = self.ray
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(refs)
        while pending:
            check_signals()
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            if pending and deadline is not None and time.monotonic() > deadline:
                raise Failure(f"error: timed out after {timeout:.0f} s waiting for {what}")

    def alive_nodes(self) -> list[dict]:
        return [
            n
            for n in self.ray.nodes()
            if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= self.args.task_cpus
        ]

    def place(self):
        from ray.util.placement_group import placement_group

        args = self.args
        deadline = time.monotonic() + args.place_timeout
        while True:
            check_signals()
            nodes = self.alive_nodes()
            if len(nodes) >= args.min_nodes:
                break
            if time.monotonic() > deadline:
                raise Failure(
                    f"error: {len(nodes)} alive node(s) with {args.task_cpus:g} CPU(s), "
                    f"`--min-nodes {args.min_nodes}` wanted, after {args.place_timeout:.0f} s\n"
                    "hint: `ray status` on the head shows which nodes joined"
                )
            time.sleep(0.5)
        n = args.shards
        if n <= len(nodes):
            strategy = "STRICT_SPREAD"
        else:
            strategy = "SPREAD"
            log(
                f"note: {n} shards on {len(nodes)} node(s): placing with SPREAD, so some nodes "
                "run more than one shard (each needs its own `--task-cpus`)"
            )
        self.pg = placement_group([{"CPU": args.task_cpus}] * n, strategy=strategy)
        try:
            self.wait_all([self.pg.ready()], max(1.0, deadline - time.monotonic()), "the placement group")
        except Failure:
            raise Failure(
                f"error: could not reserve {n} × {args.task_cpus:g} CPU with {strategy} on "
                f"{len(nodes)} node(s) within `--place-timeout {args.place_timeout:g}`\n"
                "hint: free CPUs on the nodes (other jobs hold them), lower `--task-cpus`, or add nodes"
            ) from None
        return strategy, len(nodes)

    def strategy_for(self, i: int):
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(
            placement_group=self.pg,
            placement_group_bundle_index=i,
            placement_group_capture_child_tasks=False,
        )

    def task(self, fn, i: int):
        if fn not in self._remotes:  # export each function to the cluster once
            self._remotes[fn] = self.ray.remote(fn)
        return self._remotes[fn].options(
            num_cpus=self.args.task_cpus, scheduling_strategy=self.strategy_for(i), max_retries=0
        )

    def clock_offsets(self, n: int) -> list[tuple[float, float]]:
        """Each bundle's clock minus the driver's, as an interval: the best of a
        few task round trips. Asymmetric delays cannot push it outside."""
        out = []
        for i in range(n):
            best = None
            remote = self.task(node_clock, i)
            for _ in range(3):
                check_signals()
                before = time.time()
                t = self.ray.get(remote.remote())
                after = time.time()
                if best is None or after - before < best[1] - best[0]:
                    best = (before, after, t)
            before, after, t = best
            out.append((t - after, t - before))
        return out

    def cancel(self, refs) -> None:
        """Cancel running shards: KeyboardInterrupt in each task (its cleanup kills
        the bench process group), then a forced kill of workers that linger."""
        ray = self.ray
        refs = list(refs)
        if not refs:
            return
        for r in refs:
            try:
                ray.cancel(r, force=False)
            except Exception:
                pass
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
        for r in pending:
            try:
                ray.cancel(r, force=True)
            except Exception:
                pass
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=5.0)

    def run(self, binary: str, version: str) -> str:
        ray = self.ray
        args = self.args
        out = os.path.abspath(args.out)
        n = args.shards
        log(f"driver: {version} at `{binary}`; {n} shard(s) via Ray {ray.__version__} at `{args.address}`")

        strategy, n_nodes = self.place()

        probes = [self.task(probe_node, i).remote(binary, version, args.ship) for i in range(n)]
        self.refs = probes
        self.wait_all(probes, args.place_timeout, "the node probes")
        nodes = ray.get(probes)
        self.refs = []
        # The address the node was started with (`ray start --node-ip-address`);
        # inside a task, Ray's own guess is the host's outbound address.
        addresses = {nd["NodeID"]: nd.get("NodeManagerAddress") for nd in ray.nodes()}
        for nd in nodes:
            nd["node_ip"] = addresses.get(nd["node_id"]) or nd["node_ip"]
        here = platform.machine()
        ship_ref = None
        for i, nd in enumerate(nodes):
            if nd["binary"]:
                continue
            if args.ship == "never":
                raise Failure(
                    f"error: shard {i}: node {nd['node_ip']} ({nd['hostname']}) has no `{TOOL}` of "
                    f"version `{version}` (found: {', '.join(nd['other_binaries']) or 'none'})\n"
                    "hint: install it there, or drop `--ship never`"
                )
            if nd["machine"] != here or nd["system"] != platform.system():
                raise Failure(
                    f"error: shard {i}: node {nd['node_ip']} ({nd['hostname']}) is "
                    f"{nd['system']}/{nd['machine']} and the driver's binary is for "
                    f"{platform.system()}/{here}, and the node has no `{TOOL}` of version `{version}`\n"
                    f"hint: install a `{TOOL}` built for {nd['machine']} on that node at `--binary`'s path or on PATH"
                )
            if ship_ref is None:
                with open(binary, "rb") as f:
                    ship_ref = ray.put(f.read())
        for i, (nd, (lo, hi)) in enumerate(zip(nodes, self.clock_offsets(n))):
            where = nd["binary"] or f"shipped ({os.path.getsize(binary) / 1e6:.0f} MB)"
            log(
                f"shard {i}/{n}: node {nd['node_ip']} {nd['hostname']} ({nd['node_id'][:8]}), "
                f"binary {where}, clock vs driver {lo * 1e3:+.1f}..{hi * 1e3:+.1f} ms"
            )
            limit = args.max_clock_error_ms
            try:
                limit_s = float(limit) / 1e3 if limit is not None else 0.1
            except ValueError:
                limit_s = float("inf")
            if min(abs(lo), abs(hi)) > limit_s and lo * hi > 0:
                log(
                    f"warning: node {nd['node_ip']}'s clock differs from the driver's by at least "
                    f"{min(abs(lo), abs(hi)) * 1e3:.0f} ms: the shards will not start together "
                    "(check chrony/NTP on both)"
                )

        start_at = time.time() + args.start_delay
        start_at_arg = f"{start_at:.3f}"
        start_at = float(start_at_arg)
        timeout_at = None if args.timeout is None else start_at + args.timeout
        log(f"start at {rfc3339(start_at)} ({start_at_arg}), in {args.start_delay:g} s")
        env = {k: os.environ[k] for k in args.forward_env}
        specs = []
        for i, nd in enumerate(nodes):
            specs.append(
                {
                    "shard": i,
                    "shards": n,
                    "bench_args": list(self.bench_args),
                    "start_at": start_at,
                    "start_at_arg": start_at_arg,
                    "max_clock_error_ms": args.max_clock_error_ms,
                    "binary": nd["binary"],
                    "ship": [ship_ref] if nd["binary"] is None else [],
                    "env": env,
                    "timeout_at": timeout_at,
                }
            )
        refs = [self.task(run_shard, i).remote(spec) for i, spec in enumerate(specs)]
        self.refs = list(refs)
        results: dict[int, dict] = {}
        pending = list(refs)
        failed: list[dict] = []
        while pending:
            check_signals()
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in done:
                i = refs.index(ref)
                try:
                    r = ray.get(ref)
                except ray.exceptions.RayError as e:
                    r = {"shard": i, "node_ip": nodes[i]["node_ip"], "hostname": nodes[i]["hostname"],
                         "exit_code": None, "error": f"its Ray task failed: {e}", "stderr_tail": ""}
                r["node_ip"] = nodes[i]["node_ip"]
                results[i] = r
                ok = r.get("error") is None and r.get("exit_code") == 0
                log(
                    f"shard {i}/{n}: {'done' if ok else 'FAILED'}"
                    + (f" (exit {r['exit_code']})" if r.get("exit_code") is not None else "")
                    + (f" in {r['wall_s']:.1f} s" if r.get("wall_s") else "")
                )
                if not ok:
                    failed.append(r)
            if failed and pending:
                # Shards that fail for a shared cause (the clock check, an unreachable
                # server) fail together: give them a moment so all are reported.
                more, pending = ray.wait(pending, num_returns=len(pending), timeout=2.0)
                for ref in more:
                    i = refs.index(ref)
                    try:
                        r = ray.get(ref)
                    except ray.exceptions.RayError:
                        continue
                    if r.get("error") is not None or r.get("exit_code") != 0:
                        r["node_ip"] = nodes[i]["node_ip"]
                        failed.append(r)
                if pending:
                    log(f"cancelling the other {len(pending)} shard(s)")
                    self.cancel(pending)
                pending = []
        self.refs = []
        if failed:
            msgs = []
            for r in sorted(failed, key=lambda r: r["shard"]):
                head = f"error: shard {r['shard']}/{n} on {r.get('node_ip')} ({r.get('hostname')})"
                if r.get("error"):
                    head += f": {r['error']}"
                else:
                    head += f" exited with code {r['exit_code']}"
                tail = (r.get("stderr_tail") or "").rstrip()
                msgs.append(head + ("\n" + _indent(tail) if tail else ""))
            raise Failure("\n".join(msgs))

        shards_dir = os.path.join(out, "shards")
        logs_dir = os.path.join(out, "logs")
        check_out(out)  # still unused: nothing else wrote there meanwhile
        os.makedirs(shards_dir)
        os.makedirs(logs_dir)
        shard_dirs = []
        for i in range(n):
            r = results[i]
            d = os.path.join(shards_dir, f"shard-{i}")
            os.makedirs(d)
            with tarfile.open(fileobj=io.BytesIO(r["tar"]), mode="r") as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(d, filter="data")
                else:  # Python < 3.11.4: the tar is our own task's
                    tar.extractall(d)
            shard_dirs.append(d)
            for stream in ("stdout", "stderr"):
                with open(os.path.join(logs_dir, f"shard-{i}.{stream}"), "w") as f:
                    f.write(r.get(stream) or "")
        plan = {
            "tool": version,
            "ray": ray.__version__,
            "address": args.address,
            "shards": n,
            "nodes_alive": n_nodes,
            "placement": strategy,
            "start_at_unix_s": start_at,
            "start_at": rfc3339(start_at),
            "start_delay_s": args.start_delay,
            "max_clock_error_ms": args.max_clock_error_ms,
            "bench_args": self.bench_args,
            "forwarded_env": sorted(env),
            "per_shard": [
                {
                    "shard": i,
                    "node_id": results[i]["node_id"],
                    "node_ip": results[i]["node_ip"],
                    "hostname": results[i]["hostname"],
                    "binary": results[i]["binary"],
                    "exit_code": results[i]["exit_code"],
                    "ready_before_start_s": results[i]["ready_before_start_s"],
                    "wall_s": results[i]["wall_s"],
                    "dir": os.path.relpath(shard_dirs[i], out),
                }
                for i in range(n)
            ],
        }
        with open(os.path.join(out, "driver.json"), "w") as f:
            json.dump(plan, f, indent=2)
            f.write("\n")

        merged = os.path.join(out, "merged")
        cmd = [binary, "merge", *shard_dirs, "-o", merged]
        if args.max_clock_error_ms is not None:  # merge flags what the shards would refuse
            cmd += ["--max-clock-error-ms", args.max_clock_error_ms]
        if args.max_start_late_ms is not None:
            cmd += ["--max-start-late-ms", args.max_start_late_ms]
        log("$ " + shlex.join(cmd))
        m = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        sys.stderr.write(m.stdout.decode(errors="replace"))
        sys.stderr.write(m.stderr.decode(errors="replace"))
        sys.stderr.flush()
        if m.returncode != 0:
            raise Failure(f"error: `{TOOL} merge` exited with code {m.returncode} (its output is above)")
        return merged


def loopback_ray(address: str) -> str:
    """Keep a single-machine test cluster on 127.0.0.1 (opt-in by
    VLLM_LOADTEST_RAY_LOOPBACK=1; the nodes must be started the same way, as
    test_two_nodes.py does). Ray rewrites a loopback address into the host's
    outbound one, because other hosts must reach a multi-node cluster; that
    rewrite (a private function, checked against the pinned Ray by the test)
    is turned off here. Returns the host to register the driver under."""
    import ray._private.services as services

    host = address.rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(f"VLLM_LOADTEST_RAY_LOOPBACK=1 wants a loopback `--address`, not `{address}`")
    services.resolve_ip_for_localhost = lambda h: h
    return "127.0.0.1" if host == "localhost" else host


def reach_gcs(address: str) -> None:
    """Fail fast on a wrong address: ray.init retries an unreachable GCS for minutes."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except (OSError, ValueError) as e:
        raise Failure(
            f"error: cannot reach the Ray cluster's GCS at `{address}`: {e}\n"
            "hint: the head's `ray start --head --port PORT` prints the address; is it running?"
        ) from None


def _indent(text: str) -> str:
    return "\n".join("  | " + line for line in text.splitlines())


def main(argv: list[str]) -> int:
    try:
        args, bench_args = parse_args(argv)
        check_out(args.out)
    except UsageError as e:
        log(f"error: {e}")
        return 2
    try:
        binary, version = resolve_local_binary(args.binary)
    except UsageError as e:
        log(f"error: {e}")
        return 2
    except Failure as e:
        log(str(e))
        return 1
    try:
        import ray
    except ImportError as e:
        log(f"error: cannot import ray: {e}\nhint: python3 -m pip install -r deploy/ray/requirements.txt")
        return 1

    def on_signal(signum, _frame):
        if not _SIGNALLED:
            _SIGNALLED.append(signum)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    driver = None
    try:
        import logging

        reach_gcs(args.address)
        init_kwargs = {}
        if os.environ.get("VLLM_LOADTEST_RAY_LOOPBACK") == "1":
            init_kwargs["_node_ip_address"] = loopback_ray(args.address)
        ray.init(address=args.address, logging_level=logging.WARNING, log_to_driver=False, **init_kwargs)
        # From here on a signal only sets a flag that the waiting loops check, so
        # that the shards are cancelled (raising from inside Ray's C calls breaks
        # them). Also, ray.init installed a fatal-signal handler for SIGTERM that
        # exits at once and would orphan the shards: this replaces it.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        check_signals()
        driver = Driver(args, bench_args, ray)
        merged = driver.run(binary, version)
        print(merged, flush=True)
        return 0
    except UsageError as e:
        log(f"error: {e}")
        return 2
    except Failure as e:
        log(str(e))
        return 1
    except ConnectionError as e:
        log(f"error: cannot connect to the Ray cluster at `{args.address}`: {e}\nhint: is `ray start --head` running there?")
        return 1
    except KeyboardInterrupt:  # Ctrl-C before any shard was placed (during ray.init)
        log("SIGINT: stopping")
        return 128 + signal.SIGINT
    except Interrupted as e:
        # Further signals must not cut the cleanup short; it is bounded.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        name = signal.Signals(e.signum).name
        if driver is not None and driver.refs:
            log(f"{name}: cancelling {len(driver.refs)} shard task(s)")
            driver.cancel(driver.refs)
        else:
            log(f"{name}: stopping")
        return 128 + e.signum
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if driver is not None and driver.pg is not None:
            try:
                from ray.util.placement_group import remove_placement_group

                remove_placement_group(driver.pg)
            except Exception:
                pass
        try:
            ray.shutdown()
        except Exception:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
