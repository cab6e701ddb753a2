"""Benchmarks that print figures (no timed tests): the evaluator against raw faiss."""

from __future__ import annotations

import json
import time
from pathlib import Path

import faiss
import numpy as np

from .evaluate import retrieval_metrics
from .provenance import environment


def _timed(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_evaluate(n: int = 10_000, dim: int = 128, classes: int = 200, repeats: int = 3, out: Path | None = None) -> dict:
    """Time the full evaluator (CMC + mAP, leave-one-out) against raw faiss on the same embeddings.

    Raw faiss rows: a top-6 search (enough for CMC top-5 after leave-one-out; no mAP) and a
    search with k = gallery size (the full ranking mAP needs).
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    labels = np.repeat(np.arange(classes), -(-n // classes))[:n]
    index = faiss.IndexFlatL2(dim)
    index.add(x)
    figures = {
        "n": n,
        "dim": dim,
        "faiss_threads": faiss.omp_get_max_threads(),
        "evaluator_s": _timed(lambda: retrieval_metrics(x, x, labels), repeats),
        "faiss_top6_s": _timed(lambda: index.search(x, 6), repeats),
        "faiss_full_ranking_s": _timed(lambda: index.search(x, n), repeats),
        "environment": environment(),
    }
    print(f"evaluator (CMC top-1/5 + mAP, {n} x {n}, {dim}-d): {figures['evaluator_s']:.2f} s")
    print(f"raw faiss IndexFlatL2 search, k=6:                {figures['faiss_top6_s']:.2f} s")
    print(f"raw faiss IndexFlatL2 search, k={n} (full rank): {figures['faiss_full_ranking_s']:.2f} s")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=1))
        print(f"wrote {out}")
    return figures
