"""Benchmarks that print figures (no timed tests): the evaluator against raw faiss, the training
engine against a conventional pipeline, and FCT's gallery upgrade against re-embedding images."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from .evaluate import retrieval_metrics
from .provenance import environment
from .store import write_json


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
        write_json(out, figures)
        print(f"wrote {out}")
    return figures


def matmul_peak(dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best measured GFLOP/s of a size x size matrix product in ``dtype`` on this machine."""
    import torch

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    seconds = _timed(lambda: torch.mm(a, b), repeats)
    return 2 * size**3 / seconds / 1e9


def training_flops_per_image(model, image_size: int, batch: int = 32) -> float:
    """Forward + backward FLOPs per image, counted by torch's flop counter (convs and matmuls)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(batch, 3, image_size, image_size)
    counter = FlopCounterMode(display=False)
    with counter:
        embedding, logits = model(x)
        (embedding.sum() + logits.sum()).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def _conventional_rate(model_factory, images, labels, batch_size: int, steps: int, workers: int) -> float:
    """Images/s of the textbook pipeline: JPEG files decoded per image by PIL, torchvision
    transforms, a DataLoader with workers, fp32, default memory format."""
    import tempfile

    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from .augment import MEAN, STD

    class JpegFolder(Dataset):
        def __init__(self, paths, targets, transform):
            self.paths, self.targets, self.transform = paths, targets, transform

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            return self.transform(Image.open(self.paths[i]).convert("RGB")), int(self.targets[i])

    n = batch_size * (steps + 2)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(n):
            path = f"{tmp}/{i}.JPEG"
            Image.fromarray(images[i % len(images)]).save(path, quality=90)
            paths.append(path)
        transform = transforms.Compose([
            transforms.RandomCrop(images.shape[1], padding=4), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(MEAN, STD),
        ])
        loader = DataLoader(JpegFolder(paths, labels[np.arange(n) % len(labels)], transform),
                            batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
        model = model_factory()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        seen, start = 0, None
        for step, (x, y) in enumerate(loader):
            if step == 2:  # the first steps warm up workers and allocator
                start, seen = time.perf_counter(), 0
            embedding, logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
        return seen / (time.perf_counter() - start)


def bench_train(profile_name: str = "cpu", steps: int = 40, workers: int = 2, out: Path | None = None) -> dict:
    """Training images/s of the profile's model: this engine against a conventional pipeline,
    plus FLOPs per image and the share of this machine's measured matmul peak."""
    import torch

    from .config import get_profile
    from .losses import CrossEntropy
    from .models import EmbeddingModel
    from .train import TrainConfig, fit

    profile = get_profile(profile_name)
    data = profile.data.load()
    n = profile.old_train.batch_size * steps
    images, labels = np.asarray(data.train.images[:: max(1, len(data.train) // n)][:n]), data.train.labels[:: max(1, len(data.train) // n)][:n]
    labels = np.unique(labels, return_inverse=True)[1]
    classes = int(labels.max()) + 1

    def factory():
        torch.manual_seed(0)
        return EmbeddingModel(profile.model, classes)

    recipe = TrainConfig(epochs=2, batch_size=profile.old_train.batch_size, warmup_epochs=0)
    log = fit(factory(), images, labels, recipe, [CrossEntropy()], seed=0, progress=False)
    engine = log["epochs"][-1]["images_per_s"]  # the second epoch: warmed up
    conventional = _conventional_rate(factory, images, labels, recipe.batch_size, steps // 2, workers)
    flops = training_flops_per_image(factory(), data.image_size)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    achieved = flops * engine / 1e9
    figures = {
        "profile": profile_name,
        "model": f"{profile.model.backbone} width {profile.model.width}, {data.image_size}x{data.image_size}",
        "batch_size": recipe.batch_size,
        "engine_precision": log["precision"],
        "engine_images_per_s": engine,
        "conventional_images_per_s": conventional,
        "speedup": engine / conventional,
        "training_gflop_per_image": flops / 1e9,
        "engine_gflop_per_s": achieved,
        "matmul_peak_gflop_per_s": peaks,
        "share_of_peak": achieved / peaks[log["precision"]],
        "environment": environment(),
    }
    print(f"model: {figures['model']}, batch {recipe.batch_size}")
    print(f"this engine ({log['precision']}, in-memory uint8, batch augmentation): {engine:8.0f} img/s")
    print(f"conventional (JPEG + PIL + DataLoader x{workers}, fp32):        {conventional:8.0f} img/s")
    print(f"speed-up: {figures['speedup']:.1f}x")
    print(f"training FLOPs per image: {flops / 1e9:.3f} GFLOP -> {achieved:.0f} GFLOP/s achieved")
    print(f"matmul peak here: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s; "
          f"share of the {log['precision']} peak: {100 * figures['share_of_peak']:.0f}%")
    if out is not None:
        write_json(out, figures)
        print(f"wrote {out}")
    return figures


def _rss_bytes() -> int | None:
    """Resident memory of this process now (Linux ``/proc``; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def _peak_extra_memory(work) -> tuple[float, int | None]:
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
    from .artefacts import get_embeddings, get_model, get_transformation
    from .store import Store
    from .train import embed
    from .transformation import upgrade_gallery

    store = Store(Path(cache_root), Path(results_root))
    if kind == "upgrade":  # stored vectors only: old embeddings and side-information of the training images
        h = get_transformation(spec, store)
        old = get_embeddings(spec.old, store, rows=spec.new.subset)
        side = old if spec.side is None else get_embeddings(spec.side, store, rows=spec.new.subset)
        old, side = _rows(old, n), _rows(side, n)
        inputs = old.nbytes + side.nbytes
        upgrade_gallery(h, old[:64], side[:64])  # warm-up: one-time kernel set-up is not the upgrade's cost
        seconds, extra = _peak_extra_memory(lambda: upgrade_gallery(h, old, side))
    else:  # backfilling: the new model re-embeds the raw images
        model = get_model(spec.new, store)
        images = _rows(spec.new.data.load().train.images, n)
        inputs = images.nbytes
        embed(model, images[:64])  # warm-up, as for the upgrade
        seconds, extra = _peak_extra_memory(lambda: embed(model, images))
    return {"method": kind, "n": n, "seconds": seconds, "rows_per_s": n / seconds, "input_mb": inputs / 2**20,
            "peak_extra_mb": None if extra is None else extra / 2**20}


def measure_upgrade_cost(spec, sizes, store) -> list[dict]:
    """FCT's upgrade (h on N stored rows) against backfilling (the new model on N images), each N in its own
    fresh process so that peak memory is its own; time and peak resident memory above the loaded inputs."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from .artefacts import get_transformation

    get_transformation(spec, store)  # train (or check) it once, here, before the timed children
    rows = []
    for n in sizes:
        for kind in ("upgrade", "re-embed"):
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                row = pool.submit(_cost_child, kind, spec, n, str(store.cache), str(store.results)).result()
            rows.append(row)
    return rows
