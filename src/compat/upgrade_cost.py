"""What an upgrade costs: FCT's transformation on N stored gallery rows against backfilling (the new model
re-embedding N images), each timed with its peak resident memory in a fresh process."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .artefacts import get_embeddings, get_model, get_transformation
from .store import Store
from .train import embed
from .transformations import upgrade_gallery


def _rss_bytes() -> int | None:
    """Resident memory of this process now (Linux ``/proc``; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def peak_extra_memory(work) -> tuple[float, int | None]:
    """Run ``work()``; return its wall seconds and its peak resident memory above the start (sampled every 2 ms)."""
    start_rss, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes() or 0)
            done.wait(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _rss_bytes() or 0)
    return seconds, None if start_rss is None else max(0, peak[0] - start_rss)


def _rows(array: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` rows of ``array`` in memory, repeating it cyclically when it has fewer."""
    return np.array(array[:n]) if n <= len(array) else np.resize(array, (n, *array.shape[1:]))


def _cost_child(kind: str, spec, n: int, cache_root: str, results_root: str) -> dict:
    """In a fresh process: load the inputs of one upgrade (or re-embedding) of ``n`` gallery rows, then measure it."""
    store = Store(Path(cache_root), Path(results_root))
    if kind == "upgrade":  # stored vectors only: old embeddings and side-information of the training images
        h = get_transformation(spec, store)
        old = get_embeddings(spec.old, store, rows=spec.new.subset)
        side = old if spec.side is None else get_embeddings(spec.side, store, rows=spec.new.subset)
        old, side = _rows(old, n), _rows(side, n)
        inputs = old.nbytes + side.nbytes
        upgrade_gallery(h, old[:64], side[:64])  # warm-up: one-time kernel set-up is not the upgrade's cost
        seconds, extra = peak_extra_memory(lambda: upgrade_gallery(h, old, side))
    else:  # backfilling: the new model re-embeds the raw images
        model = get_model(spec.new, store)
        images = _rows(spec.new.data.load().train.images, n)
        inputs = images.nbytes
        embed(model, images[:64])  # warm-up, as for the upgrade
        seconds, extra = peak_extra_memory(lambda: embed(model, images))
    return {
        "method": kind,
        "n": n,
        "seconds": seconds,
        "rows_per_s": n / seconds,
        "input_mb": inputs / 2**20,
        "peak_extra_mb": None if extra is None else extra / 2**20,
    }


def measure_upgrade_cost(spec, sizes, store) -> list[dict]:
    """FCT's upgrade (h on N stored rows) against backfilling (the new model on N images), each N in its own
    fresh process so that peak memory is its own; time and peak resident memory above the loaded inputs."""
    get_transformation(spec, store)  # train (or check) it once, here, before the timed children
    rows = []
    for n in sizes:
        for kind in ("upgrade", "re-embed"):
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                row = pool.submit(_cost_child, kind, spec, n, str(store.cache), str(store.results)).result()
            rows.append(row)
    return rows
