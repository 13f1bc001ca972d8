#!/usr/bin/env python3
"""Write a trace in vllm-loadtest's JSON-lines format (docs/trace-format.md).

    scripts/make-trace.py [--seed N] [--requests N] > examples/traces/synthetic.jsonl
    scripts/make-trace.py --from-burstgpt BurstGPT.csv [--limit N] > burstgpt.jsonl

The synthetic trace is what `examples/traces/synthetic.jsonl` holds (regenerate it with the
defaults to get the same file): arrivals from a two-state Markov-modulated Poisson process
(calm spells, then bursts several times as dense), so the replay keeps a real trace's
burstiness; prompts as Mooncake describes them, `hash_ids` of 512-token blocks, where
conversations share a system prompt's blocks and each turn of a conversation repeats the
blocks of the turn before (a prefix cache's best case, as in chat traffic).

`--from-burstgpt` converts a local copy of the BurstGPT CSV (columns `Timestamp` in seconds,
`Request tokens`, `Response tokens`); rows with no response (failed requests) are skipped.
Nothing is downloaded. Standard library only.
"""

import argparse
import csv
import json
import math
import random
import sys

BLOCK = 512
CALM_RPS, BURST_RPS = 2.5, 14.0
CALM_MEAN_S, BURST_MEAN_S = 8.0, 2.5
SYSTEM_PROMPTS = 3  # shared by every conversation that starts with one
MAX_BLOCKS = 8  # a conversation longer than this starts over


def synthetic(seed, n):
    rng = random.Random(seed)
    next_id = 0

    def new_ids(k):
        nonlocal next_id
        ids = list(range(next_id, next_id + k))
        next_id += k
        return ids

    # one or two blocks per system prompt, numbered first
    systems = [new_ids(rng.randint(1, 2)) for _ in range(SYSTEM_PROMPTS)]
    sessions = {}  # id -> the last turn's hash ids
    t, burst = 0.0, False
    switch_at = rng.expovariate(1.0 / CALM_MEAN_S)
    lines = []
    while len(lines) < n:
        rate = BURST_RPS if burst else CALM_RPS
        gap = rng.expovariate(rate)
        if t + gap >= switch_at:
            # memoryless: restart the draw from the switch in the new state
            t = switch_at
            burst = not burst
            switch_at = t + rng.expovariate(1.0 / (BURST_MEAN_S if burst else CALM_MEAN_S))
            continue
        t += gap
        if sessions and rng.random() < 0.6:
            sid = rng.choice(sorted(sessions))
            ids = sessions[sid] + new_ids(rng.randint(1, 2))
            if len(ids) > MAX_BLOCKS:
                ids = rng.choice(systems) + new_ids(rng.randint(1, 3))
        else:
            sid = "s%03d" % len(sessions)
            ids = rng.choice(systems) + new_ids(rng.randint(1, 3))
        sessions[sid] = ids
        # the last block partial: ceil(input_length / 512) == len(hash_ids), as Mooncake's
        input_length = len(ids) * BLOCK - rng.randint(0, BLOCK - 1)
        lines.append(
            {
                "timestamp": int(round(t * 1000)),
                "input_length": input_length,
                "output_length": rng.randint(16, 160),
                "hash_ids": ids,
                "session_id": sid,
            }
        )
    return lines


def burstgpt(path, limit):
    lines = []
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        first = None
        for row in rows:
            try:
                ts = float(row["Timestamp"])
                inp = int(float(row["Request tokens"]))
                out = int(float(row["Response tokens"]))
            except (KeyError, ValueError) as e:
                sys.exit(f"error: {path} line {rows.line_num}: {e!r}\nhint: BurstGPT's columns are Timestamp, Request tokens, Response tokens")
            if out < 1 or inp < 1 or not math.isfinite(ts):
                continue
            first = ts if first is None else first
            lines.append(
                {
                    "timestamp": int(round((ts - first) * 1000)),
                    "input_length": inp,
                    "output_length": out,
                }
            )
            if limit and len(lines) >= limit:
                break
    lines.sort(key=lambda l: l["timestamp"])
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--from-burstgpt", metavar="CSV")
    p.add_argument("--limit", type=int, default=0, help="with --from-burstgpt: at most this many rows")
    a = p.parse_args()
    lines = burstgpt(a.from_burstgpt, a.limit) if a.from_burstgpt else synthetic(a.seed, a.requests)
    out = sys.stdout
    for l in lines:
        out.write(json.dumps(l, separators=(", ", ": ")) + "\n")


if __name__ == "__main__":
    main()
