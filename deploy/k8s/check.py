#!/usr/bin/env python3
"""Offline check of the Kubernetes manifests in deploy/k8s (or in DIR).

    python3 deploy/k8s/check.py [DIR]          # the manifests, filled with sample values
    python3 deploy/k8s/check.py --use-env      # filled with YOUR values, before a real run
    python3 deploy/k8s/check.py --self-test    # proves the check rejects broken copies

What it does, for every *.yaml in DIR:
1. fills the ${NAME} placeholders the way render.sh (envsubst) does, with sample values
   (or, with --use-env, the environment's), and, where `sh` and `envsubst` exist, renders
   through render.sh too and requires the same text;
2. parses the YAML (a key given twice is an error, as it is for kubectl);
3. validates every object against the Kubernetes API's JSON schema, strict (an unknown
   field, a wrong type, a missing required field, an unknown kind all fail), for every
   Kubernetes version bundled by the `kubernetes-validate` package from MIN_K8S up;
4. checks this deployment's own invariants (see check_invariants): an Indexed Job with
   completions == parallelism == SHARDS, no retries, `--shard $(JOB_COMPLETION_INDEX)/SHARDS`,
   `--start-at`, the output folder under the shared claim, the merge Job reading the same
   run folder and shard count, every $(NAME) in args defined, …

Exit status: 0 all passed, 1 something failed, 77 the validator package is not installed
(`pip install -r deploy/k8s/requirements.txt`), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_SKIP = 0, 1, 2, 77

HERE = Path(__file__).resolve().parent

# The placeholders render.sh fills (keep in step with NAMES in render.sh).
NAMES = ("RUN", "SHARDS", "START_AT", "IMAGE", "BASE_URL", "MODEL", "STORAGE_CLASS")
SAMPLE = {
    "RUN": "r20261201-173000",
    "SHARDS": "3",
    "START_AT": "2026-12-01T17:30:00Z",
    "IMAGE": "registry.example.com/vllm-loadtest:0123456789ab",
    "BASE_URL": "http://vllm.llm.svc.cluster.local:8000",
    "MODEL": "meta-llama/Llama-3.1-8B-Instruct",
    "STORAGE_CLASS": "nfs-client",
}

# The oldest Kubernetes the manifests are checked against (and meant for): nodeTaintsPolicy
# of topologySpreadConstraints is on by default from 1.26, the Job labels from 1.27.
MIN_K8S = "1.27"

# --start-at's lead time plus image pull and pod start that activeDeadlineSeconds must leave
# room for, besides --duration and --drain-timeout.
LEAD_ALLOWANCE_S = 300
DEFAULT_DRAIN_TIMEOUT_S = 300  # bench's --drain-timeout default

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
LEFTOVER = re.compile(r"\$\{[^}]*\}")
K8S_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- rendering -------------------------------------------------------------------------


def render(text: str, values: dict[str, str]) -> str:
    """envsubst with an explicit list: $NAME and ${NAME} for NAME in NAMES, nothing else."""

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name in NAMES:
            return values.get(name, "")
        return m.group(0)

    return PLACEHOLDER.sub(sub, text)


def render_with_script(path: Path, values: dict[str, str]) -> tuple[str | None, str]:
    """The same file through render.sh (the README's way); (None, why) when not possible."""
    script = path.parent / "render.sh"
    if not script.exists():
        return None, "no render.sh beside the manifests"
    if not (shutil.which("sh") and shutil.which("envsubst")):
        return None, "sh or envsubst not on PATH"
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    env.update(values)
    p = subprocess.run(
        ["sh", str(script), str(path)], env=env, capture_output=True, text=True, timeout=60
    )
    if p.returncode != 0:
        return None, f"render.sh failed ({p.returncode}): {p.stderr.strip()}"
    return p.stdout, ""


# --- Kubernetes' $(NAME) expansion in command/args (a port of the kubelet's) ------------


def k8s_expand(s: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """Expands $(NAME) as the kubelet does ($$ is a literal $); also returns the names of
    references that look like variables but are not defined (the kubelet leaves those as
    they are, silently)."""
    out, undefined, i = [], [], 0
    while i < len(s):
        if s[i] == "$" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                j = s.find(")", i + 2)
                if j != -1:
                    name = s[i + 2 : j]
                    if name in env:
                        out.append(env[name])
                    else:
                        out.append(s[i : j + 1])
                        if K8S_REF.match(name):
                            undefined.append(name)
                    i = j + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(s[i])
        i += 1
    return "".join(out), undefined


# --- YAML --------------------------------------------------------------------------------


def yaml_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark
                )
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    StrictLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    return StrictLoader


# --- schema --------------------------------------------------------------------------------


def versions_to_check(wanted: str | None) -> list[str]:
    from kubernetes_validate import utils

    def mm(v: str) -> tuple[int, int]:
        a, b = v.split(".")[:2]
        return int(a), int(b)

    bundled = sorted({".".join(v.split(".")[:2]) for v in utils.all_versions()}, key=mm)
    if wanted:
        if wanted not in bundled:
            raise SystemExit(
                f"check.py: Kubernetes {wanted} is not bundled by kubernetes-validate "
                f"(bundled: {', '.join(bundled)})"
            )
        return [wanted]
    return [v for v in bundled if mm(v) >= mm(MIN_K8S)]


def schema_errors(doc: dict, versions: list[str]) -> list[str]:
    import kubernetes_validate
    from kubernetes_validate import utils

    errors: list[str] = []
    for v in versions:
        try:
            kubernetes_validate.validate(doc, v, strict=True)
        except utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top)"
            errors.append(f"Kubernetes {v} schema: {path}: {e.message}")
        except utils.SchemaNotFoundError as e:
            errors.append(f"Kubernetes {v} schema: {e.message}")
        except Exception as e:  # noqa: BLE001 - any failure to validate is a failure
            errors.append(f"Kubernetes {v} schema: could not validate: {e}")
        if errors:
            break  # the same mistake in every version: once is enough
    return errors


# --- our invariants ----------------------------------------------------------------------


def parse_flags(argv: list[str]) -> dict[str, list[str | None]]:
    """--flag=value, --flag value, --switch → {flag: [values]} (None for a switch)."""
    flags: dict[str, list[str | None]] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            if "=" in a:
                k, v = a.split("=", 1)
                flags.setdefault(k, []).append(v)
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                flags.setdefault(a, []).append(argv[i + 1])
                i += 1
            else:
                flags.setdefault(a, []).append(None)
        i += 1
    return flags


def get(d, *path, default=None):
    for p in path:
        if isinstance(d, dict) and p in d:
            d = d[p]
        elif isinstance(d, list) and isinstance(p, int) and 0 <= p < len(d):
            d = d[p]
        else:
            return default
    return d


def claim_mounts(pod_spec: dict, container: dict) -> dict[str, str]:
    """{claimName: mountPath} of the container's PVC mounts."""
    claims = {
        v.get("name"): get(v, "persistentVolumeClaim", "claimName")
        for v in pod_spec.get("volumes") or []
        if isinstance(v, dict) and get(v, "persistentVolumeClaim", "claimName")
    }
    return {
        claims[m["name"]]: m.get("mountPath", "").rstrip("/") or "/"
        for m in container.get("volumeMounts") or []
        if isinstance(m, dict) and m.get("name") in claims
    }


def env_values(container: dict) -> dict[str, str | None]:
    """Container env: literal values, None for valueFrom ones."""
    return {
        e.get("name"): e.get("value")
        for e in container.get("env") or []
        if isinstance(e, dict) and e.get("name")
    }


def check_common_pod(errs: list[str], where: str, job: dict, pod: dict) -> None:
    if get(pod, "restartPolicy") != "Never":
        errs.append(f"{where}: spec.template.spec.restartPolicy must be Never")
    for field in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        if not isinstance(get(job, "spec", field), int):
            errs.append(f"{where}: spec.{field} must be set")
    for c in pod.get("containers") or []:
        req = get(c, "resources", "requests") or {}
        if "cpu" not in req or "memory" not in req:
            errs.append(f"{where}: container {c.get('name')}: resources.requests cpu and memory must be set")


def selects(selector: dict | None, labels: dict) -> bool:
    if not isinstance(selector, dict):
        return False
    ml = selector.get("matchLabels") or {}
    if not ml and not selector.get("matchExpressions"):
        return False
    if any(labels.get(k) != v for k, v in ml.items()):
        return False
    for ex in selector.get("matchExpressions") or []:
        key, op, vals = ex.get("key"), ex.get("operator"), ex.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def check_invariants(docs: list[dict], values: dict[str, str], use_env: bool) -> list[str]:
    errs: list[str] = []
    n = int(values["SHARDS"]) if values["SHARDS"].isdigit() else None
    run = values["RUN"]

    def comp(d):
        return get(d, "metadata", "labels", "app.kubernetes.io/component")

    pvcs = [d for d in docs if d.get("kind") == "PersistentVolumeClaim"]
    shard_jobs = [d for d in docs if d.get("kind") == "Job" and comp(d) == "shard"]
    merge_jobs = [d for d in docs if d.get("kind") == "Job" and comp(d) == "merge"]
    pods = [d for d in docs if d.get("kind") == "Pod"]
    for what, found in (
        ("one PersistentVolumeClaim", pvcs),
        ("one shard Job (label app.kubernetes.io/component: shard)", shard_jobs),
        ("one merge Job (label app.kubernetes.io/component: merge)", merge_jobs),
        ("one results Pod", pods),
    ):
        if len(found) != 1:
            errs.append(f"expected {what}, found {len(found)}")
    if errs:
        return errs
    pvc, job, merge, reader = pvcs[0], shard_jobs[0], merge_jobs[0], pods[0]

    for d in docs:
        name = get(d, "metadata", "name") or ""
        if not isinstance(name, str) or len(name) > 63 or not DNS_LABEL.match(name):
            errs.append(f"{d.get('kind')} name {name!r} is not a DNS label of at most 63 characters")

    # the volume
    claim = get(pvc, "metadata", "name")
    if "ReadWriteMany" not in (get(pvc, "spec", "accessModes") or []):
        errs.append("PersistentVolumeClaim: accessModes must include ReadWriteMany (the shard pods run on several nodes at once)")

    # --- the shard Job
    w = "shard Job"
    spec = job.get("spec") or {}
    pod = get(spec, "template", "spec") or {}
    labels = get(spec, "template", "metadata", "labels") or {}
    if spec.get("completionMode") != "Indexed":
        errs.append(f"{w}: spec.completionMode must be Indexed (it sets JOB_COMPLETION_INDEX)")
    c_, p_ = spec.get("completions"), spec.get("parallelism")
    if c_ != p_:
        errs.append(f"{w}: completions ({c_}) != parallelism ({p_}): every shard must run at once")
    if n is not None and (c_ != n or p_ != n):
        errs.append(f"{w}: completions/parallelism ({c_}/{p_}) must both be SHARDS ({n})")
    if spec.get("backoffLimit") != 0:
        errs.append(f"{w}: spec.backoffLimit must be 0: a retried shard starts after START_AT, late")
    if spec.get("backoffLimitPerIndex") not in (None, 0):
        errs.append(f"{w}: spec.backoffLimitPerIndex must be 0 or unset")
    for rule in get(spec, "podFailurePolicy", "rules") or []:
        if rule.get("action") == "Ignore":
            errs.append(f"{w}: podFailurePolicy action Ignore would re-create a shard pod late")
    check_common_pod(errs, w, job, pod)
    if isinstance(get(job, "metadata", "name"), str) and n is not None:
        host = f"{job['metadata']['name']}-{n - 1}"
        if len(host) > 63:
            errs.append(f"{w}: pod hostname {host!r} would exceed 63 characters: shorten RUN")

    # spread across nodes: a topology spread or anti-affinity on the node, selecting these pods
    spread = [
        t for t in pod.get("topologySpreadConstraints") or []
        if t.get("topologyKey") == "kubernetes.io/hostname"
        and t.get("whenUnsatisfiable") == "DoNotSchedule"
        and selects(t.get("labelSelector"), labels)
    ]
    anti = [
        t for t in get(pod, "affinity", "podAntiAffinity",
                       "requiredDuringSchedulingIgnoredDuringExecution", default=[]) or []
        if t.get("topologyKey") == "kubernetes.io/hostname" and selects(t.get("labelSelector"), labels)
    ]
    if not spread and not anti:
        errs.append(
            f"{w}: no topologySpreadConstraints (DoNotSchedule) or required podAntiAffinity on "
            "kubernetes.io/hostname whose labelSelector selects the pod template's labels"
        )

    containers = pod.get("containers") or []
    if len(containers) != 1:
        errs.append(f"{w}: expected one container, found {len(containers)}")
        return errs
    c = containers[0]
    image = c.get("image")
    mounts = claim_mounts(pod, c)
    if claim not in mounts:
        errs.append(f"{w}: the container does not mount the claim {claim!r}")
        return errs
    mount = mounts[claim]
    argv = list(c.get("command") or []) + list(c.get("args") or [])
    if not argv or not str(argv[0]).endswith("vllm-loadtest") or "bench" not in argv[:2]:
        errs.append(f"{w}: the container must run `vllm-loadtest bench …` (command/args: {argv[:3]})")
    env = env_values(c)
    defined = {k: ("" if v is None else v) for k, v in env.items()}
    defined.setdefault("JOB_COMPLETION_INDEX", "0")  # set by the Job controller (Indexed)
    for a in argv:
        _, undefined = k8s_expand(str(a), defined)
        for u in undefined:
            errs.append(f"{w}: args reference $({u}), which is not an env var of the container (it would be passed literally)")
    flags = parse_flags([str(a) for a in argv])
    for f in ("--shard", "--start-at", "--output-dir", "--seed", "--base-url"):
        if f not in flags:
            errs.append(f"{w}: args lack {f}")
        elif len(flags[f]) != 1 or flags[f][0] is None:
            errs.append(f"{w}: {f} must be given once, with a value")
    for f in ("--sim", "--search"):
        if f in flags:
            errs.append(f"{w}: {f} makes no sense in a sharded run against a server")
    shard = (flags.get("--shard") or [None])[0]
    m = re.fullmatch(r"\$\(JOB_COMPLETION_INDEX\)/(\d+)", shard or "")
    if shard is not None and not m:
        errs.append(f"{w}: --shard must be $(JOB_COMPLETION_INDEX)/N, is {shard!r}")
    elif m and n is not None and int(m.group(1)) != n:
        errs.append(f"{w}: --shard says N = {m.group(1)}, but completions = SHARDS = {n}")
    start = (flags.get("--start-at") or [None])[0]
    if start is not None:
        expanded, _ = k8s_expand(start, defined)
        if expanded != values["START_AT"]:
            errs.append(f"{w}: --start-at {start!r} becomes {expanded!r}, not START_AT {values['START_AT']!r}")
    out = (flags.get("--output-dir") or [None])[0]
    want_out = f"{mount.rstrip('/')}/{run}/shard-$(JOB_COMPLETION_INDEX)"
    if out is not None and out != want_out:
        errs.append(f"{w}: --output-dir must be {want_out!r} (the claim's mount, the run, the index), is {out!r}")
    run_dir = f"{mount.rstrip('/')}/{run}"
    deadline = spec.get("activeDeadlineSeconds")
    duration = (flags.get("--duration") or [None])[0]
    drain = (flags.get("--drain-timeout") or [str(DEFAULT_DRAIN_TIMEOUT_S)])[0]
    need = None
    try:
        if duration is not None:
            need = float(duration) + float(drain or 0) + LEAD_ALLOWANCE_S
    except ValueError:
        errs.append(f"{w}: --duration {duration!r} / --drain-timeout {drain!r} are not numbers")
    if need is not None and isinstance(deadline, int) and deadline < need:
        errs.append(
            f"{w}: activeDeadlineSeconds {deadline} < --duration + --drain-timeout + "
            f"{LEAD_ALLOWANCE_S} s of lead time = {need:g}: the Job would be stopped mid-run"
        )
    if use_env and isinstance(deadline, int):
        errs += check_start_at(values["START_AT"], deadline, need)

    # --- the merge Job
    w = "merge Job"
    mspec = merge.get("spec") or {}
    mpod = get(mspec, "template", "spec") or {}
    check_common_pod(errs, w, merge, mpod)
    if mspec.get("backoffLimit") != 0:
        errs.append(f"{w}: spec.backoffLimit must be 0")
    mcs = mpod.get("containers") or []
    if len(mcs) != 1:
        errs.append(f"{w}: expected one container, found {len(mcs)}")
        return errs
    mc = mcs[0]
    mmounts = claim_mounts(mpod, mc)
    if mmounts.get(claim) != mount:
        errs.append(f"{w}: must mount the claim {claim!r} at {mount!r} like the shard Job (mounts: {mmounts})")
    if mc.get("image") != image:
        errs.append(f"{w}: image {mc.get('image')!r} differs from the shard Job's {image!r}")
    menv = env_values(mc)
    if menv.get("RUN_DIR") != run_dir:
        errs.append(f"{w}: env RUN_DIR must be the shard Job's run folder {run_dir!r}, is {menv.get('RUN_DIR')!r}")
    if n is not None and menv.get("SHARD_COUNT") != str(n):
        errs.append(f"{w}: env SHARD_COUNT must be SHARDS ({n}), is {menv.get('SHARD_COUNT')!r}")
    script = " ".join(str(a) for a in list(mc.get("command") or []) + list(mc.get("args") or []))
    for needle in ("vllm-loadtest merge", "$RUN_DIR", "$SHARD_COUNT", '-o "$RUN_DIR/merged"'):
        if needle not in script:
            errs.append(f"{w}: the command does not contain {needle!r}")
    expanded, undefined = k8s_expand(script, {k: v or "" for k, v in menv.items()})
    for u in undefined:
        errs.append(f"{w}: the command references $({u}), not an env var of the container")
    if expanded != script and not undefined:
        errs.append(f"{w}: Kubernetes' $(NAME) expansion would change the shell script")

    # --- the results pod
    w = "results Pod"
    rcs = reader.get("spec", {}).get("containers") or []
    if not rcs or claim_mounts(reader["spec"], rcs[0]).get(claim) != mount:
        errs.append(f"{w}: must mount the claim {claim!r} at {mount!r}")
    if not isinstance(get(reader, "spec", "activeDeadlineSeconds"), int):
        errs.append(f"{w}: spec.activeDeadlineSeconds must be set (it must not sleep forever)")
    return errs


def parse_start(s: str) -> dt.datetime:
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return dt.datetime.fromtimestamp(float(s), tz=dt.timezone.utc)
    t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError("no time zone")
    return t


def check_start_at(start: str, deadline: int, need: float | None) -> list[str]:
    try:
        t = parse_start(start)
    except ValueError as e:
        return [f"START_AT {start!r}: not RFC 3339 with a zone, nor Unix seconds ({e})"]
    lead = (t - dt.datetime.now(dt.timezone.utc)).total_seconds()
    print(f"START_AT is {lead:+.0f} s from now (this machine's clock)")
    if lead < 30:
        return [f"START_AT {start} is {lead:.0f} s from now: give the pods time to be scheduled and pull the image (2 min or more)"]
    if need is not None and lead + need - LEAD_ALLOWANCE_S + 60 > deadline:
        return [f"START_AT {start} is {lead:.0f} s away: with the run's own time the Job's activeDeadlineSeconds {deadline} would stop it; start sooner or raise it"]
    return []


# --- one directory -----------------------------------------------------------------------


def check_dir(d: Path, values: dict[str, str], versions: list[str], use_env: bool) -> int:
    import yaml

    t0 = time.monotonic()
    files = sorted(d.glob("*.yaml"))
    if not files:
        print(f"FAIL no *.yaml in {d}")
        return EXIT_FAIL
    failures = 0
    docs: list[dict] = []
    loader = yaml_loader()
    for f in files:
        text = render(f.read_text(), values)
        problems = []
        for m in LEFTOVER.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            problems.append(f"line {line}: placeholder {m.group(0)} is not one of {', '.join(NAMES)}")
        via_script, why = render_with_script(f, values)
        if via_script is None:
            if "failed" in why:
                problems.append(why)
            else:
                print(f"note {f.name}: not rendered through render.sh too ({why})")
        elif via_script != text:
            problems.append("render.sh (envsubst) gives a different text than check.py's rendering")
        try:
            fdocs = [x for x in yaml.load_all(text, Loader=loader) if x is not None]
        except yaml.YAMLError as e:
            problems.append(f"YAML: {e}".replace("\n", " "))
            fdocs = []
        for doc in fdocs:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                problems.append("a document without kind/apiVersion")
                continue
            docs.append(doc)
            kn = f"{doc['kind']}/{get(doc, 'metadata', 'name')}"
            for e in schema_errors(doc, versions):
                problems.append(f"{kn}: {e}")
        for p in problems:
            print(f"FAIL {f.name}: {p}")
        if not problems:
            kinds = ", ".join(f"{x['kind']}/{get(x, 'metadata', 'name')}" for x in fdocs)
            print(f"ok   {f.name}: {kinds}")
        failures += len(problems)
    inv = check_invariants(docs, values, use_env) if docs else ["no objects"]
    for e in inv:
        print(f"FAIL invariant: {e}")
    failures += len(inv)
    took = time.monotonic() - t0
    vs = f"{versions[0]}…{versions[-1]}" if len(versions) > 1 else versions[0]
    if failures:
        print(f"check.py: {failures} problem(s) in {d} (Kubernetes {vs}, strict; {took:.1f} s)")
        return EXIT_FAIL
    print(f"check.py: {len(files)} files, {len(docs)} objects valid against the Kubernetes {vs} "
          f"schemas (strict) and the invariants ({took:.1f} s)")
    return EXIT_OK


# --- self-test: broken copies must be rejected --------------------------------------------

# (name, file, old, new, a piece of the expected complaint)
MUTATIONS = [
    ("misspelled field (restartPolicy)", "shards-job.yaml",
     "restartPolicy: Never", "restartPolicyy: Never", "'restartPolicyy' was unexpected"),
    ("misspelled nested field (topologyKey)", "shards-job.yaml",
     "topologyKey:", "topologykey:", "'topologyKey' is a required property"),
    ("misspelled metadata field (labels)", "merge-job.yaml",
     "\n  labels:", "\n  label:", "'label' was unexpected"),
    ("wrong type: activeDeadlineSeconds as a string", "shards-job.yaml",
     "activeDeadlineSeconds: 1800", 'activeDeadlineSeconds: "1800"', "is not of type 'integer'"),
    ("wrong type: env value as a number", "merge-job.yaml",
     'value: "${SHARDS}"', "value: ${SHARDS}", "is not of type 'string'"),
    ("wrong type: args as one string", "shards-job.yaml",
     'command: ["vllm-loadtest"]', 'command: "vllm-loadtest"', "is not of type 'array'"),
    ("unknown apiVersion", "shards-job.yaml",
     "apiVersion: batch/v1", "apiVersion: batch/v9", "Couldn't find schema"),
    ("completions != parallelism", "shards-job.yaml",
     "parallelism: ${SHARDS}", "parallelism: 2", "completions (3) != parallelism (2)"),
    ("completions != SHARDS", "shards-job.yaml",
     "completions: ${SHARDS}\n  parallelism: ${SHARDS}", "completions: 5\n  parallelism: 5",
     "must both be SHARDS"),
    ("not Indexed", "shards-job.yaml",
     "completionMode: Indexed", "completionMode: NonIndexed", "completionMode must be Indexed"),
    ("--shard with another N", "shards-job.yaml",
     "$(JOB_COMPLETION_INDEX)/${SHARDS}", "$(JOB_COMPLETION_INDEX)/4", "--shard says N = 4"),
    ("--shard without the index", "shards-job.yaml",
     '"--shard=$(JOB_COMPLETION_INDEX)/${SHARDS}"', '"--shard=0/${SHARDS}"',
     "--shard must be $(JOB_COMPLETION_INDEX)/N"),
    ("--start-at missing", "shards-job.yaml",
     "            - --start-at=$(START_AT)\n", "", "args lack --start-at"),
    ("$(VAR) misspelled (not defined)", "shards-job.yaml",
     "--start-at=$(START_AT)", "--start-at=$(START_TIME)", "$(START_TIME)"),
    ("retries allowed", "shards-job.yaml",
     "backoffLimit: 0", "backoffLimit: 3", "backoffLimit must be 0"),
    ("restartPolicy OnFailure", "shards-job.yaml",
     "restartPolicy: Never", "restartPolicy: OnFailure", "restartPolicy must be Never"),
    ("no spread across nodes", "shards-job.yaml",
     "topologyKey: kubernetes.io/hostname", "topologyKey: topology.kubernetes.io/zone",
     "no topologySpreadConstraints"),
    ("spread selector that selects nothing", "shards-job.yaml",
     "              app.kubernetes.io/component: shard\n",
     "              app.kubernetes.io/component: shards\n", "no topologySpreadConstraints"),
    ("merge reads another run folder", "merge-job.yaml",
     'value: "/results/${RUN}"', 'value: "/results/${RUN}-old"', "env RUN_DIR must be"),
    ("merge with another shard count", "merge-job.yaml",
     'value: "${SHARDS}"', 'value: "2"', "env SHARD_COUNT must be SHARDS"),
    ("shard output outside the run folder", "shards-job.yaml",
     "/results/${RUN}/shard-$(JOB_COMPLETION_INDEX)", "/tmp/shard-$(JOB_COMPLETION_INDEX)",
     "--output-dir must be"),
    ("deadline shorter than the run", "shards-job.yaml",
     "activeDeadlineSeconds: 1800", "activeDeadlineSeconds: 120", "would be stopped mid-run"),
    ("no ttlSecondsAfterFinished", "merge-job.yaml",
     "  ttlSecondsAfterFinished: 86400\n", "", "ttlSecondsAfterFinished must be set"),
    ("claim not ReadWriteMany", "pvc.yaml",
     "- ReadWriteMany", "- ReadWriteOnce", "must include ReadWriteMany"),
    ("misspelled placeholder", "shards-job.yaml",
     "completions: ${SHARDS}", "completions: ${SHARD}", "placeholder ${SHARD}"),
    ("a key given twice", "results-pod.yaml",
     "  restartPolicy: Never\n", "  restartPolicy: Never\n  restartPolicy: Always\n", "given twice"),
]


def self_test(src: Path, versions: list[str]) -> int:
    files = sorted(src.glob("*.yaml")) + [src / "render.sh"]
    # one version is enough to see each break (the full run checks them all): the newest
    # unless -k chose one
    kv = ["-k", versions[-1]]
    failed = 0

    def run_copy(tmp: Path) -> tuple[int, str]:
        p = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), str(tmp), *kv],
            capture_output=True, text=True, timeout=300,
        )
        return p.returncode, p.stdout + p.stderr

    with tempfile.TemporaryDirectory(prefix="k8s-check-") as t:
        base = Path(t) / "base"
        base.mkdir()
        for f in files:
            shutil.copy2(f, base / f.name)
        rc, out = run_copy(base)
        ok = rc == EXIT_OK
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} unmodified copy passes (exit {rc})")
        if not ok:
            print(out)
        for name, fname, old, new, expect in MUTATIONS:
            d = Path(t) / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            shutil.copytree(base, d)
            p = d / fname
            text = p.read_text()
            if old not in text:
                print(f"FAIL {name}: {old!r} not found in {fname}: the self-test is out of date")
                failed += 1
                continue
            p.write_text(text.replace(old, new, 1))
            rc, out = run_copy(d)
            hit = expect in out
            ok = rc == EXIT_FAIL and hit
            failed += not ok
            line = next((ln for ln in out.splitlines() if expect in ln), "")
            print(f"{'ok  ' if ok else 'FAIL'} rejects {name} (exit {rc}): {line.strip()[:160]}")
            if not ok:
                print(out)
        # render.sh refuses an unset variable instead of writing an empty value
        if shutil.which("sh") and shutil.which("envsubst"):
            env = {k: v for k, v in os.environ.items() if k not in NAMES}
            env.update({k: v for k, v in SAMPLE.items() if k != "SHARDS"})
            p = subprocess.run(["sh", str(base / "render.sh"), str(base / "shards-job.yaml")],
                               env=env, capture_output=True, text=True)
            ok = p.returncode != 0 and "set SHARDS" in p.stderr
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} render.sh refuses an unset SHARDS (exit {p.returncode}): {p.stderr.strip()}")
            env["SHARDS"], env["RUN"] = "3", "Run_1"
            p = subprocess.run(["sh", str(base / "render.sh"), str(base / "merge-job.yaml")],
                               env=env, capture_output=True, text=True)
            ok = p.returncode != 0 and "RUN=" in p.stderr
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} render.sh refuses RUN=Run_1 (exit {p.returncode}): {p.stderr.strip()[:100]}")
    total = len(MUTATIONS) + 3
    print(f"self-test: {total - failed} passed, {failed} failed")
    return EXIT_OK if failed == 0 else EXIT_FAIL


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", default=str(HERE), help="folder of the manifests (default: this script's)")
    ap.add_argument("--use-env", action="store_true",
                    help="fill the placeholders from the environment (all of " + ", ".join(NAMES) + ") instead of samples, and check START_AT's lead time")
    ap.add_argument("--self-test", action="store_true", help="break copies of the manifests in a temp folder, one way at a time, and require each to be rejected")
    ap.add_argument("-k", "--kubernetes-version", help=f"check against this version only (default: every bundled one from {MIN_K8S})")
    a = ap.parse_args()
    try:
        import kubernetes_validate  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        print(f"check.py: skipped: {e.name} is not installed (pip install -r {HERE / 'requirements.txt'})")
        return EXIT_SKIP
    d = Path(a.dir)
    if not d.is_dir():
        print(f"check.py: {d} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    versions = versions_to_check(a.kubernetes_version)
    if a.self_test:
        return self_test(d, versions)
    if a.use_env:
        missing = [k for k in NAMES if not os.environ.get(k)]
        if missing:
            print(f"check.py: --use-env: set {', '.join(missing)}", file=sys.stderr)
            return EXIT_USAGE
        values = {k: os.environ[k] for k in NAMES}
    else:
        values = dict(SAMPLE)
    return check_dir(d, values, versions, a.use_env)


if __name__ == "__main__":
    sys.exit(main())
