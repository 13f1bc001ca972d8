"""Open a vllm-loadtest results folder as pandas DataFrames (the notebooks' one loader).

A run folder is `results/<experiment>/<date>/`: `runs.parquet` (one row per cell),
`timeseries.parquet` (per-second series, long format, keyed by `cell`) and
`cells/<cell>/requests.parquet` (one row per request). The folder is `$RESULTS_DIR` when
set, else the newest run under `../results/` whose experiment name starts with one of
`prefer` (else the newest run of any experiment).
"""

import os
from pathlib import Path

import pandas as pd


def find_run(prefer=()):
    env = os.environ.get("RESULTS_DIR")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parent.parent / "results"
    runs = sorted(
        (p.parent for p in root.glob("*/*/runs.parquet")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for name in prefer:
        for r in runs:
            if r.parent.name.startswith(name):
                return r
    if not runs:
        raise FileNotFoundError(
            f"no results under {root}: run `vllm-loadtest run examples/quickstart.yaml` "
            "first, or set RESULTS_DIR to a run folder"
        )
    return runs[0]


def load(run):
    """runs, timeseries and every cell's requests (with a `cell` column), as DataFrames."""
    run = Path(run)
    runs = pd.read_parquet(run / "runs.parquet")
    ts = pd.read_parquet(run / "timeseries.parquet")
    parts = []
    for cell in runs["cell"]:
        p = run / "cells" / cell / "requests.parquet"
        if p.exists():
            parts.append(pd.read_parquet(p).assign(cell=cell))
    requests = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return runs, ts, requests


def server_columns(runs):
    """The matrix's server parameters other than dp (e.g. max_num_seqs) present in runs."""
    known = ["max_num_seqs", "max_num_batched_tokens", "num_gpu_blocks", "api_server_count"]
    return [c for c in known if c in runs.columns]
