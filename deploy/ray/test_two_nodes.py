#!/usr/bin/env python3
"""End-to-end test of deploy/ray/driver.py on a real two-node Ray cluster on loopback.

    python3 deploy/ray/test_two_nodes.py --binary /work/bin/vllm-loadtest

Starts `vllm-loadtest sim --profile zero --port 0`, a Ray head and a Ray worker
(two `ray start --block`, two raylets, 1 CPU each, no dashboard, no usage
stats, every address 127.0.0.1), then runs the driver with 2 shards:

1. `split`:     the binary found on each node; the merged cell's request
                accounting equals the sum of the shards' and the requested count,
                each shard ran on its own node, the merged summary names both shards;
2. `loopback`:  every TCP socket of the processes it started is on 127.0.0.1;
3. `run`:       `vllm-loadtest run` with `client: {engine: ray}`, two cells;
4. `ship-spread`: `--ship always` (the binary travels through the object store)
                with 3 shards on 2 nodes (half a CPU each): SPREAD, both nodes used;
5. `unplaceable`: 3 shards of 1 CPU on two 1-CPU nodes: refused before anything runs;
6. `refuse`:    a shard that fails (the clock check, where this machine's kernel
                calls its clock unsynchronised) fails the driver with its own text;
7. `sigint`, `sigterm`, `sigkill`: the driver interrupted mid-run (SIGTERM: before
                the start): exit 130 / 143 / killed, no bench process nor temp folder left;
8. `clean`:     after the cluster and the simulator are stopped, no process this
                test started is left (it is a child subreaper, so every process
                started under it, daemonised or not, stays its descendant), and the
                nodes' temp folders hold no shard folder.

Exit 0 pass, 1 fail, 77 skip (ray not importable). Bounded by `--timeout`
(default 300 s). Kills only processes it started.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "driver.py")
EXIT_SKIP = 77
REQUESTED = 100
RATE = 50


def bench_args(num_prompts: int = REQUESTED) -> list[str]:
    return ["--dataset-name", "random", "--random-input-len", "32", "--random-output-len", "8",
            "--request-rate", str(RATE), "--num-prompts", str(num_prompts)]


# `ray start`, except that 127.0.0.1 stays 127.0.0.1: Ray otherwise rewrites a
# loopback `--node-ip-address`/`--address` into the host's outbound address (a
# multi-node cluster must be reachable from other hosts). The driver does the
# same under VLLM_LOADTEST_RAY_LOOPBACK=1.
RAY_START_ON_LOOPBACK = (
    "import sys, ray._private.services as s; s.resolve_ip_for_localhost = lambda h: h; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)


class TestTimeout(BaseException):
    pass


class CheckFailed(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def become_subreaper() -> bool:
    """Orphans of anything we start get re-parented to us, not to init: then
    'what did this test start' is exactly 'our descendants'."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stat(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'
    rest = data[data.rindex(")") + 2 :].split()
    return rest[0], int(rest[1])  # state, ppid


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def descendants(alive_only: bool = True) -> dict[int, str]:
    me = os.getpid()
    children: dict[int, list[int]] = {}
    states = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st is None:
            continue
        states[int(entry)] = st[0]
        children.setdefault(st[1], []).append(int(entry))
    out, todo = {}, list(children.get(me, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if alive_only and states.get(pid) == "Z":
            continue
        out[pid] = _cmdline(pid)
    return out


def reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_group(proc: subprocess.Popen, sig=signal.SIGTERM, grace: float = 30.0) -> None:
    """Signal a process we started (the leader of its own group), then SIGKILL its group."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log(f"pid {proc.pid} ignored {signal.Signals(sig).name} for {grace:.0f} s: SIGKILL")
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its group: ours, started with start_new_session
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def wait_for_text(path: str, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            m = re.search(pattern, f.read())
        if m:
            return m
        if proc.poll() is not None:
            raise CheckFailed(f"`{proc.args[0]}` exited with {proc.returncode} before printing /{pattern}/:\n{tail(path)}")
        time.sleep(0.2)
    raise CheckFailed(f"no /{pattern}/ from pid {proc.pid} within {timeout:.0f} s:\n{tail(path)}")


def tail(path: str, n: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def _addr(hexaddr: str) -> tuple[ipaddress._BaseAddress, int]:
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    # /proc/net/tcp{,6} print each 32-bit word in host (little-endian) order
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip, int(port, 16)


def tcp_sockets_of(pids) -> list[tuple[int, str, str, str]]:
    """(pid, state, local, remote) of every TCP socket the given processes hold."""
    table = {}
    for fam in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{fam}") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    table[parts[9]] = (parts[3], _addr(parts[1]), _addr(parts[2]))
        except OSError:
            pass
    out = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in table:
                st, local, remote = table[link[8:-1]]
                out.append((pid, st, local, remote))
    return out


def clock_unsynchronised() -> bool | None:
    """What the kernel says (adjtimex STA_UNSYNC or TIME_ERROR); None if unknown."""
    class Timex(ctypes.Structure):
        _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                    ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                    ("pad", ctypes.c_byte * 256)]
    try:
        tx = Timex()
        state = ctypes.CDLL(None, use_errno=True).adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state == 5 or bool(tx.status & 0x40)


def find_key(obj, pred, path=""):
    """Every (path, value) in a JSON tree whose key satisfies pred."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}"
            if pred(k):
                found.append((p, v))
            found += find_key(v, pred, p)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += find_key(v, pred, f"{path}[{i}]")
    return found


def same_instant(rfc3339: str | None, unix_s: float) -> bool:
    """An RFC 3339 instant (any precision) equals Unix seconds, to the millisecond."""
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(str(rfc3339).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return False
    return abs(t - unix_s) < 0.0011


def sent_of(summary: dict) -> int:
    try:
        return int(summary["vllm_loadtest"]["summary"]["sent"])
    except (KeyError, TypeError, ValueError):
        raise CheckFailed("summary.json has no `vllm_loadtest.summary.sent`") from None


class Run:
    def __init__(self, args):
        self.args = args
        # Short: Ray's unix sockets live under it (108-byte path limit).
        self.tmp = tempfile.mkdtemp(prefix="vlt-ray-")
        self.env = dict(os.environ)
        self.env.update({
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
            "PYTHONUNBUFFERED": "1",
            "VLLM_LOADTEST_RAY_LOOPBACK": "1",
        })
        self.sim = None
        self.nodes: list[subprocess.Popen] = []  # head first
        self.node_tmps: list[str] = []
        self.gcs = None
        self.port = None
        self.passed: list[str] = []
        self.failed: list[str] = []

    def spawn(self, name: str, cmd: list[str], env=None) -> tuple[subprocess.Popen, str]:
        path = os.path.join(self.tmp, f"{name}.log")
        with open(path, "wb") as f:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                    env=env or self.env, start_new_session=True)
        return proc, path

    # -- setup --

    def start_sim(self) -> None:
        self.sim, path = self.spawn("sim", [self.args.binary, "sim", "--profile", "zero", "--port", "0"])
        m = wait_for_text(path, r"listening on http://127\.0\.0\.1:(\d+)", self.sim, 30)
        self.port = int(m.group(1))
        log(f"simulator pid {self.sim.pid} on 127.0.0.1:{self.port}")

    def start_node(self, head: bool) -> None:
        name = "head" if head else "worker"
        node_tmp = os.path.join(self.tmp, name[0] + "t")  # the node's TMPDIR: shard folders land here
        os.makedirs(node_tmp)
        self.node_tmps.append(node_tmp)
        cmd = [sys.executable, "-c", RAY_START_ON_LOOPBACK,
               "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0",
               "--object-store-memory", str(400 * 1024 * 1024), "--disable-usage-stats",
               "--temp-dir", os.path.join(self.tmp, name[0]),
               "--dashboard-agent-listen-port", str(free_port())]
        if head:
            self.gcs = free_port()
            # (no Ray Client server: it needs `ray[client]`, and the driver does not use it)
            cmd += ["--head", "--port", str(self.gcs), "--include-dashboard", "false"]
        else:
            cmd += ["--address", f"127.0.0.1:{self.gcs}"]
        env = dict(self.env, TMPDIR=node_tmp)
        proc, path = self.spawn(name, cmd, env)
        self.nodes.append(proc)
        wait_for_text(path, r"Ray runtime started", proc, 90)
        log(f"ray {name} pid {proc.pid} up" + (f", GCS at 127.0.0.1:{self.gcs}" if head else ""))

    # -- the driver --

    def driver(self, name: str, extra: list[str], bench_extra: list[str] = (), background=False,
               num_prompts: int = REQUESTED, shards: int = 2):
        out = os.path.join(self.tmp, f"out-{name}")
        cmd = [sys.executable, DRIVER, "--address", f"127.0.0.1:{self.gcs}", "--shards", str(shards),
               "--binary", self.args.binary, "--start-delay", "3", "--min-nodes", "2",
               "--place-timeout", "60", "--out", out, *extra, "--",
               "--base-url", f"http://127.0.0.1:{self.port}", *bench_args(num_prompts), *bench_extra]
        log("$ " + " ".join(cmd))
        stdout_path = os.path.join(self.tmp, f"driver-{name}.stdout")
        stderr_path = os.path.join(self.tmp, f"driver-{name}.stderr")
        with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=so, stderr=se, env=self.env,
                                    start_new_session=True)
        if background:
            return proc, out, stdout_path, stderr_path
        t0 = time.monotonic()
        try:
            proc.wait(timeout=150)
        except subprocess.TimeoutExpired:
            stop_group(proc, signal.SIGINT, 30)
            raise CheckFailed(f"driver `{name}` still running after 150 s:\n{tail(stderr_path)}")
        log(f"driver `{name}` exited {proc.returncode} after {time.monotonic() - t0:.1f} s")
        with open(stdout_path) as f:
            stdout = f.read()
        with open(stderr_path) as f:
            stderr = f.read()
        return proc.returncode, out, stdout, stderr

    def check_cell(self, name: str, rc: int, out: str, stdout: str, stderr: str, binary_kind: str,
                   shards: int = 2) -> None:
        if rc != 0:
            raise CheckFailed(f"driver exited {rc}:\n{stderr}")
        merged = os.path.join(out, "merged")
        lines = stdout.strip().splitlines()
        if not lines or lines[-1] != merged:
            raise CheckFailed(f"the last stdout line is {lines[-1:]!r}, not `{merged}`")
        shard_sent = []
        for i in range(shards):
            d = os.path.join(out, "shards", f"shard-{i}")
            if not os.path.isfile(os.path.join(d, "summary.json")):
                raise CheckFailed(f"no `{d}/summary.json`")
            with open(os.path.join(d, "summary.json")) as f:
                shard_sent.append(sent_of(json.load(f)))
        with open(os.path.join(merged, "summary.json")) as f:
            summary = json.load(f)
        sent = sent_of(summary)
        if not (sent == sum(shard_sent) == REQUESTED):
            raise CheckFailed(f"merged sent {sent}, shards sent {shard_sent} (sum {sum(shard_sent)}), requested {REQUESTED}")
        if max(shard_sent) - min(shard_sent) > 1:
            raise CheckFailed(f"shards sent {shard_sent}: i % {shards} should split {REQUESTED} evenly")
        with open(os.path.join(out, "driver.json")) as f:
            plan = json.load(f)
        # `vllm_loadtest.shards`: {count, start_at, shards: [{index, sent, late_ms, …}], apart}
        listed = (summary.get("vllm_loadtest") or {}).get("shards")
        if not isinstance(listed, dict) or not isinstance(listed.get("shards"), list):
            found = [p for p, _ in find_key(summary, lambda k: "shard" in k.lower())]
            raise CheckFailed(f"the merged summary.json has no `vllm_loadtest.shards.shards` list (shard keys: {found})")
        entries = sorted(listed["shards"], key=lambda e: e.get("index", -1))
        if listed.get("count") != shards or [e.get("index") for e in entries] != list(range(shards)):
            raise CheckFailed(f"the merged summary lists shards {[e.get('index') for e in entries]} "
                              f"(count {listed.get('count')}), wanted {list(range(shards))}")
        if [e.get("sent") for e in entries] != shard_sent:
            raise CheckFailed(f"the merged summary's per-shard sent {[e.get('sent') for e in entries]} "
                              f"is not the shards' own {shard_sent}")
        if not same_instant(listed.get("start_at"), plan["start_at_unix_s"]):
            raise CheckFailed(f"the merged start `{listed.get('start_at')}` is not the driver's `{plan['start_at']}`")
        per = plan["per_shard"]
        if len({s["node_id"] for s in per}) != 2:  # one per node; 3 shards still on both nodes
            raise CheckFailed(f"the shards did not use both nodes: {[s['node_id'] for s in per]}")
        want = "STRICT_SPREAD" if shards <= 2 else "SPREAD"
        if plan["placement"] != want:
            raise CheckFailed(f"placement {plan['placement']}, wanted {want}")
        kinds = [s["binary"] for s in per]
        if binary_kind == "shipped" and kinds != ["shipped"] * shards:
            raise CheckFailed(f"binaries {kinds}, wanted every one shipped")
        if binary_kind == "node" and "shipped" in kinds:
            raise CheckFailed(f"binaries {kinds}, wanted the nodes' own")
        for s in per:
            if s["ready_before_start_s"] is None or s["ready_before_start_s"] <= 0:
                raise CheckFailed(f"shard {s['shard']} was ready {s['ready_before_start_s']} s before the start")
        log(f"`{name}`: merged sent {sent} = {' + '.join(map(str, shard_sent))}; merged lists shards "
            f"{[e['index'] for e in entries]} "
            f"(started {[e.get('late_ms') for e in entries]} ms late) at {listed['start_at']}; "
            f"nodes {[s['node_id'][:8] for s in per]}; binaries {kinds}; ready "
            f"{[round(s['ready_before_start_s'], 2) for s in per]} s before the start")

    def no_shard_leftovers(self, wait: float = 15.0) -> None:
        """No shard temp folder and no bench process (after a killed worker, its
        reaper may still be at work: give it `wait` seconds)."""
        deadline = time.monotonic() + wait
        while True:
            left = [p for t in self.node_tmps for p in glob.glob(os.path.join(t, "vllm-loadtest-shard*"))]
            bench = {pid: c for pid, c in descendants().items() if " bench " in f" {c} "}
            if not (left or bench) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if left:
            raise CheckFailed(f"shard temp folders left behind: {left}")
        if bench:
            raise CheckFailed(f"bench processes still running: {bench}")

    def check(self, name: str, fn) -> None:
        log(f"--- {name}")
        try:
            fn()
            if name != "clean":
                self.no_shard_leftovers()
        except CheckFailed as e:
            self.failed.append(name)
            log(f"FAIL {name}: {e}")
            return
        self.passed.append(name)
        log(f"ok {name}")

    # -- the checks --

    def t_split(self) -> None:
        self.check_cell("split", *self.driver("split", ["--max-clock-error-ms", "inf"]), binary_kind="node")

    def t_loopback(self) -> None:
        self.assert_loopback("idle cluster")

    def t_run(self) -> None:
        """`vllm-loadtest run` with `client: {engine: ray}`: each cell of a two-rate matrix
        sent by two shards on the two nodes and merged into the run's cell folder, which
        the run's tables and report then read like any other."""
        exp = os.path.join(self.tmp, "ray-run.yaml")
        with open(exp, "w") as f:
            f.write(f"""name: ray-run
server: {{launcher: external, urls: ["http://127.0.0.1:{self.port}"]}}
client: {{engine: ray, shards: 2, address: "127.0.0.1:{self.gcs}", python: "{sys.executable}", start_delay_s: 3, max_clock_error_ms: inf}}
workload: {{dataset: random, input_len: 32, output_len: 8, num_prompts: 50}}
matrix: {{request_rate: [25, 50]}}
""")
        results = os.path.join(self.tmp, "run-results")
        cmd = [self.args.binary, "run", exp, "--output", results, "--quiet"]
        log("$ " + " ".join(cmd))
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=self.env,
                           timeout=240)
        if p.returncode != 0:
            raise CheckFailed(f"run exited {p.returncode}:\n{p.stderr[-3000:]}")
        runs = [os.path.join(results, "ray-run", d) for d in os.listdir(os.path.join(results, "ray-run"))]
        if len(runs) != 1:
            raise CheckFailed(f"expected one run folder, found {runs}")
        cells = os.path.join(runs[0], "cells")
        names = sorted(os.listdir(cells))
        if len(names) != 2:
            raise CheckFailed(f"expected 2 cells, found {names}")
        for name in names:
            c = os.path.join(cells, name)
            with open(os.path.join(c, "summary.json")) as f:
                ours = json.load(f)["vllm_loadtest"]
            with open(os.path.join(c, "status.json")) as f:
                status = json.load(f)["status"]
            s, shards = ours["summary"], ours.get("shards") or {}
            if status != "complete" or s["sent"] != 50 or s["ok"] != 50:
                raise CheckFailed(f"cell {name}: status {status}, sent {s['sent']}, ok {s['ok']}")
            if shards.get("count") != 2 or sum(x["sent"] for x in shards["shards"]) != 50:
                raise CheckFailed(f"cell {name}: shards {shards}")
            if (ours.get("cell") or {}).get("id") != name:
                raise CheckFailed(f"cell {name}: the run's record of the cell is missing")
            if not os.path.exists(os.path.join(c, "requests.parquet")):
                raise CheckFailed(f"cell {name}: no requests.parquet")
        for table in ["runs.parquet", "analysis.json", "report.md"]:
            if not os.path.exists(os.path.join(runs[0], table)):
                raise CheckFailed(f"the run has no {table}")
        log(f"`run`: 2 cells of 50 requests, each from 2 Ray shards, merged; tables and report written")

    def assert_loopback(self, when: str) -> None:
        """Every TCP socket of every process this test started (the cluster, its
        workers, the simulator, a running driver and its shards) is on 127.0.0.1
        at both ends."""
        socks = tcp_sockets_of(descendants())
        LISTEN = "0A"
        bad = [(pid, local, remote) for pid, st, local, remote in socks
               if not local[0].is_loopback or (st != LISTEN and not remote[0].is_loopback)]
        if not socks:
            raise CheckFailed("found no TCP socket of the cluster at all")
        if bad:
            raise CheckFailed("sockets off loopback:\n" + "\n".join(
                f"  pid {pid} ({_cmdline(pid)[:80]}): {l[0]}:{l[1]} -> {r[0]}:{r[1]}" for pid, l, r in bad[:20]))
        n_listen = sum(1 for _, st, _, _ in socks if st == LISTEN)
        log(f"`loopback` ({when}): {len(socks)} TCP sockets ({n_listen} listening) of {len(descendants())} processes, all on 127.0.0.1")

    def t_ship_spread(self) -> None:
        """The binary shipped to the nodes, and more shards than nodes (SPREAD, each shard
        with half a CPU): one driver run checks both."""
        self.check_cell("ship-spread", *self.driver(
            "ship-spread", ["--max-clock-error-ms", "inf", "--ship", "always", "--task-cpus", "0.5"], shards=3),
            binary_kind="shipped", shards=3)

    def t_unplaceable(self) -> None:
        """3 shards of 1 CPU on two 1-CPU nodes cannot all run at once: refused, nothing run."""
        rc, out, _, stderr = self.driver("unplaceable", ["--max-clock-error-ms", "inf", "--place-timeout", "2"],
                                         shards=3)
        if rc != 1 or "could not reserve 3" not in stderr:
            raise CheckFailed(f"driver exited {rc}, wanted 1 with `could not reserve 3`:\n{stderr}")
        if os.path.exists(out):
            raise CheckFailed(f"`{out}` was created for a run that never started")
        log("`unplaceable`: " + " / ".join(l for l in stderr.splitlines() if l.startswith(("error", "hint"))))

    def t_refuse(self) -> None:
        unsync = clock_unsynchronised()
        if unsync:
            extra, why = ["--max-clock-error-ms", "100"], "the kernel calls this clock unsynchronised"
        else:
            # Synchronised here: make the shards fail another way, by a flag bench refuses.
            extra, why = ["--max-clock-error-ms", "inf"], "an unknown bench flag"
        bench_extra = [] if unsync else ["--no-such-flag-for-the-test"]
        rc, out, stdout, stderr = self.driver("refuse", extra, bench_extra)
        if rc != 1:
            raise CheckFailed(f"driver exited {rc}, wanted 1 ({why}):\n{stderr}")
        if "error: shard " not in stderr or "  | " not in stderr:
            raise CheckFailed(f"the driver's error does not carry a shard's own text:\n{stderr}")
        if os.path.exists(os.path.join(out, "merged")):
            raise CheckFailed("a merged cell was written for a failed run")
        log(f"`refuse` ({why}): driver exited 1 with:\n" + "\n".join(
            line for line in stderr.splitlines() if line.startswith(("error", "  |", "hint")))[:2000])

    def t_sigint(self) -> None:
        self.interrupt(signal.SIGINT, after_start=True)

    def t_sigterm(self) -> None:
        self.interrupt(signal.SIGTERM, after_start=False)

    def t_sigkill(self) -> None:
        self.interrupt(signal.SIGKILL, after_start=True)

    def interrupt(self, sig: signal.Signals, after_start: bool) -> None:
        name = sig.name.lower()
        # Long enough (2000 requests at 50/s: 40 s) to be caught mid-run.
        proc, out, _, stderr_path = self.driver(
            name, ["--max-clock-error-ms", "inf"], background=True, num_prompts=2000)
        deadline = time.monotonic() + 60
        bench = {}
        while time.monotonic() < deadline and proc.poll() is None:
            bench = {pid: c for pid, c in descendants().items() if " bench " in f" {c} " and "--shard" in c}
            if len(bench) == 2:
                break
            time.sleep(0.2)
        if len(bench) != 2:
            stop_group(proc, signal.SIGINT, 30)
            raise CheckFailed(f"did not see 2 bench processes (saw {bench}); driver:\n{tail(stderr_path)}")
        with open(stderr_path) as f:
            m = re.search(r"start at \S+ \((\d+\.\d+)\)", f.read())
        if not m:
            stop_group(proc, signal.SIGINT, 30)
            raise CheckFailed(f"the driver did not say its start instant:\n{tail(stderr_path)}")
        start_at = float(m.group(1))
        if after_start:
            # into the run: the shards are sending
            time.sleep(max(0.0, start_at + 2 - time.time()))
            self.assert_loopback("driver and shards sending")
        elif time.time() > start_at - 1:
            stop_group(proc, signal.SIGINT, 30)
            raise CheckFailed("too late to interrupt before the start instant")
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stop_group(proc, signal.SIGKILL, 1)
            raise CheckFailed(f"driver still running 60 s after {sig.name}:\n{tail(stderr_path)}")
        took = time.monotonic() - t0
        want = -sig if sig == signal.SIGKILL else 128 + sig
        if rc != want:
            raise CheckFailed(f"driver exited {rc} on {sig.name}, wanted {want}:\n{tail(stderr_path)}")
        gone_by = time.monotonic() + 30
        while time.monotonic() < gone_by and any(pid in descendants() for pid in bench):
            time.sleep(0.2)
        gone = time.monotonic() - t0
        left = {pid: c for pid, c in descendants().items() if pid in bench}
        if left:
            raise CheckFailed(f"bench processes outlived the driver's {sig.name} by 30 s: {left}")
        if os.path.exists(os.path.join(out, "merged")):
            raise CheckFailed("a merged cell was written for an interrupted run")
        log(f"`{name}` ({'after' if after_start else 'before'} the start instant): driver exited {rc} "
            f"{took:.1f} s after {sig.name}; bench pids {sorted(bench)} gone after {gone:.1f} s")

    def t_clean(self) -> None:
        self.teardown()
        time.sleep(0.5)
        reap_zombies()
        left = descendants()
        if left:
            deadline = time.monotonic() + 10  # processes in their exit path
            while left and time.monotonic() < deadline:
                time.sleep(0.5)
                reap_zombies()
                left = descendants()
        if left:
            for pid in left:  # ours: descendants of this subreaper
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise CheckFailed("still running after teardown (now killed):\n" +
                              "\n".join(f"  {pid}: {c[:200]}" for pid, c in left.items()))
        left = [p for t in self.node_tmps for p in os.listdir(t)]
        if left:
            raise CheckFailed(f"files left in the nodes' TMPDIR: {left}")
        log("`clean`: no process left; nodes' TMPDIR empty")

    def teardown(self) -> None:
        for proc in reversed(self.nodes):  # the worker first, then the head
            stop_group(proc, signal.SIGTERM, 30)
        self.nodes = []
        if self.sim is not None:
            stop_group(self.sim, signal.SIGINT, 10)
            self.sim = None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    built = os.path.normpath(os.path.join(HERE, "..", "..", "target", "release", "vllm-loadtest"))
    default_bin = built if os.access(built, os.X_OK) else shutil.which("vllm-loadtest")
    p.add_argument("--binary", default=default_bin, help=f"the vllm-loadtest to test with (default: {default_bin})")
    p.add_argument("--timeout", type=float, default=300, help="hard bound on the whole test, seconds (default: 300)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (logs, outputs)")
    args = p.parse_args()
    try:
        import ray
    except ImportError as e:
        print(f"skip: ray is not importable ({e}); install it with "
              f"`python3 -m pip install -r {os.path.join(HERE, 'requirements.txt')}`", flush=True)
        return EXIT_SKIP
    if not args.binary or not os.access(args.binary, os.X_OK):
        print(f"error: no vllm-loadtest binary (`{args.binary}`)\nhint: pass `--binary PATH`", flush=True)
        return 1
    args.binary = os.path.abspath(args.binary)
    if not become_subreaper():
        print("error: prctl(PR_SET_CHILD_SUBREAPER) failed: cannot account for every process started (Linux only)")
        return 1

    def on_alarm(_sig, _frame):
        raise TestTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.timeout))
    t0 = time.monotonic()
    run = Run(args)
    log(f"ray {ray.__version__}, binary {args.binary}, temp {run.tmp}")
    try:
        try:
            run.start_sim()
            run.start_node(head=True)
            run.start_node(head=False)
        except CheckFailed as e:
            run.failed.append("setup")
            log(f"FAIL setup: {e}")
        else:
            run.check("split", run.t_split)
            run.check("loopback", run.t_loopback)
            run.check("run", run.t_run)
            run.check("ship-spread", run.t_ship_spread)
            run.check("unplaceable", run.t_unplaceable)
            run.check("refuse", run.t_refuse)
            run.check("sigint", run.t_sigint)
            run.check("sigterm", run.t_sigterm)
            run.check("sigkill", run.t_sigkill)
    except TestTimeout:
        run.failed.append("timeout")
        log(f"FAIL: the test ran past its --timeout of {args.timeout:.0f} s")
    finally:
        signal.alarm(60)  # the teardown gets its own bound
        try:
            run.check("clean", run.t_clean)
        except TestTimeout:
            run.failed.append("clean")
            log("FAIL clean: teardown took over 60 s")
            for pid in descendants():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        signal.alarm(0)
        if args.keep or run.failed:
            log(f"logs kept in {run.tmp}")
        else:
            shutil.rmtree(run.tmp, ignore_errors=True)
    log(f"took {time.monotonic() - t0:.0f} s")
    print(f"ray-two-nodes: {len(run.passed)} passed, {len(run.failed)} failed", flush=True)
    return 0 if not run.failed else 1


if __name__ == "__main__":
    sys.exit(main())
