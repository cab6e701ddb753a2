"""Benchmarks that print figures (no timed tests): the evaluator against raw faiss, search and upgrade
cost against gallery size, and the training engine against a conventional pipeline (FCT's gallery upgrade
against re-embedding images is :mod:`compat.upgrade_cost`)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from .augment import MEAN, STD
from .config import get_profile
from .evaluate import build_index, retrieval_metrics, search
from .losses import CrossEntropy
from .models import EmbeddingModel
from .provenance import environment
from .store import write_json
from .train import TrainConfig, fit
from .transformations import build_transformation, upgrade_gallery
from .upgrade_cost import peak_extra_memory


def _written(figures: dict, out: Path | None) -> dict:
    """A benchmark's figures, also written to ``out`` (JSON) when it is given."""
    if out is not None:
        write_json(out, figures)
        print(f"wrote {out}")
    return figures


def _timed(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


EVALUATE_CLASSES = 200
EVALUATE_SIZES = (2 * EVALUATE_CLASSES, 30_000)  # every class holds a pair; the full n x n ranking fits in 12 GB


def bench_evaluate(n: int = 10_000, dim: int = 128, classes: int = EVALUATE_CLASSES, repeats: int = 3, out: Path | None = None) -> dict:
    """Time the evaluator (leave-one-out, query set = gallery) against raw faiss on the same embeddings: with mAP
    (every positive's rank in the full ranking) and top-k only (CMC top-1/5), beside a raw faiss top-7 search
    (CMC top-5 after leave-one-out plus the tie row) and a search with k = gallery size (a full ranking)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    labels = np.repeat(np.arange(classes), -(-n // classes))[:n]
    index = faiss.IndexFlatL2(dim)
    index.add(x)
    figures = {
        "n": n,
        "dim": dim,
        "faiss_threads": faiss.omp_get_max_threads(),
        "evaluator_map_s": _timed(lambda: retrieval_metrics(x, x, labels), repeats),
        "evaluator_topk_s": _timed(lambda: retrieval_metrics(x, x, labels, with_map=False), repeats),
        "faiss_top7_s": _timed(lambda: index.search(x, 7), repeats),
        "faiss_full_ranking_s": _timed(lambda: index.search(x, n), repeats),
        "environment": environment(),
    }
    print(f"evaluator, CMC top-1/5 + mAP ({n} x {n}, {dim}-d): {figures['evaluator_map_s']:.2f} s")
    print(
        f"evaluator, CMC top-1/5 only:                     {figures['evaluator_topk_s']:.2f} s "
        f"({figures['evaluator_topk_s'] / figures['faiss_top7_s']:.1f}x raw faiss top-7)"
    )
    print(f"raw faiss IndexFlatL2 search, k=7:               {figures['faiss_top7_s']:.2f} s")
    print(f"raw faiss IndexFlatL2 search, k={n} (full rank): {figures['faiss_full_ranking_s']:.2f} s")
    return _written(figures, out)


def clustered_gallery(n: int, dim: int = 128, classes: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic labelled vectors: Gaussian clusters (unit-variance centres, noise 1.3: overlapping, so that
    retrieval is neither trivial nor chance) around ``classes`` centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    x = centres[labels]
    x += rng.normal(scale=1.3, size=x.shape).astype(np.float32)
    return x, labels


def bench_gallery(sizes=(10_000, 100_000, 1_000_000), queries: int = 1000, dim: int = 128, k: int = 10, out: Path | None = None) -> dict:
    """Search and upgrade cost against gallery size N on synthetic clustered vectors: exact top-k search, an
    approximate IVF-Flat index (build, search, recall@k against exact), the exact evaluator with mAP over the
    full ranking, and the gallery upgrade (FCT's h, the cpu profile's width, without side-information) of all N
    stored vectors; wall seconds and peak resident memory above the inputs for each."""

    h = build_transformation(get_profile("cpu").fct.transformation, dim, dim, dim)
    rows = []
    for n in sizes:
        gallery, labels = clustered_gallery(n + queries, dim)
        query, query_labels, gallery, labels = gallery[:queries], labels[:queries], gallery[queries:], labels[queries:]
        found = {}

        def exact():
            found["exact"] = search(build_index(gallery, "flat"), query, k)[1]

        def approximate():
            found["ivf"] = search(build_index(gallery, "ivf"), query, k)[1]

        def evaluate():
            found["metrics"] = retrieval_metrics(query, gallery, query_labels, labels, leave_one_out=False, chunk_size=64)

        for what, work in (
            ("exact top-k search", exact),
            ("IVF-Flat build + search", approximate),
            ("evaluator with mAP", evaluate),
            ("gallery upgrade (h)", lambda: upgrade_gallery(h, gallery, gallery)),
        ):
            seconds, extra = peak_extra_memory(work)
            rows.append({"n": n, "what": what, "seconds": seconds, "peak_extra_mb": None if extra is None else extra / 2**20})
            print(f"N={n:>9,d}  {what:24s} {seconds:8.2f} s  peak extra {rows[-1]['peak_extra_mb'] or 0:8.1f} MB")
        recall = float(np.mean([len(set(a) & set(e)) / k for a, e in zip(found["ivf"], found["exact"])]))
        rows[-3]["recall_at_k"] = recall
        print(f"N={n:>9,d}  IVF-Flat recall@{k} against exact: {recall:.3f}; exact mAP {found['metrics']['mAP']:.1f} %")
    figures = {"queries": queries, "dim": dim, "k": k, "gallery_mb_per_million": 1e6 * dim * 4 / 2**20, "rows": rows, "environment": environment()}
    return _written(figures, out)


def matmul_peak(dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best measured GFLOP/s of a size x size matrix product in ``dtype`` on this machine."""

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    seconds = _timed(lambda: torch.mm(a, b), repeats)
    return 2 * size**3 / seconds / 1e9


def training_flops_per_image(model, image_size: int, batch: int = 32) -> float:
    """Forward + backward FLOPs per image, counted by torch's flop counter (convs and matmuls)."""

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
        transform = transforms.Compose(
            [
                transforms.RandomCrop(images.shape[1], padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(MEAN, STD),
            ]
        )
        loader = DataLoader(
            JpegFolder(paths, labels[np.arange(n) % len(labels)], transform), batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True
        )
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


def _training_sample(profile, steps: int):
    """The profile's data and ``steps`` batches of its training images, evenly strided over the set (so every
    class is drawn), with labels renumbered 0..C-1."""
    data = profile.data.load()
    n = profile.old_train.batch_size * steps
    every = max(1, len(data.train) // n)
    return data, np.asarray(data.train.images[::every][:n]), np.unique(data.train.labels[::every][:n], return_inverse=True)[1]


def bench_train(profile_name: str = "cpu", steps: int = 40, workers: int = 2, out: Path | None = None) -> dict:
    """Training images/s of the profile's model: this engine against a conventional pipeline,
    plus FLOPs per image and the share of this machine's measured matmul peak."""

    profile = get_profile(profile_name)
    data, images, labels = _training_sample(profile, steps)
    classes = int(labels.max()) + 1

    def factory():
        torch.manual_seed(0)
        return EmbeddingModel(profile.model, classes)

    recipe = TrainConfig(epochs=2, batch_size=profile.old_train.batch_size, warmup_epochs=0)
    log = fit(factory(), images, labels, recipe, [CrossEntropy()], seed=0, progress=False)
    engine = _second_epoch_rate(log)
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
    print(
        f"matmul peak here: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s; "
        f"share of the {log['precision']} peak: {100 * figures['share_of_peak']:.0f}%"
    )
    return _written(figures, out)


def _second_epoch_rate(log: dict) -> float:
    """Images/s of a two-epoch training log's second epoch (the first pays the warm-up, or the compilation)."""
    return log["epochs"][-1]["images_per_s"]


def bench_levers(profile_name: str = "cpu", steps: int = 40, workers: int = 2, out: Path | None = None) -> dict:
    """The throughput levers the step profile points at, each training the profile's old model (its recipe, two
    epochs) with this engine in one run beside the conventional pipeline (issue 29 item 3): the engine as the book trains, the backbone compiled
    by ``torch.compile`` (the CPU inductor, which fuses BatchNorm and activation into the convolutions' neighbours),
    and half and twice the batch. The weight average already updates with foreach ops (:mod:`compat.averaging`)."""
    profile = get_profile(profile_name)
    _, images, labels = _training_sample(profile, steps)
    classes = int(labels.max()) + 1
    batch = profile.old_train.batch_size

    def rate(batch_size: int, compiled: bool = False) -> float:
        torch.manual_seed(0)
        model = EmbeddingModel(profile.model, classes)
        recipe = dataclasses.replace(profile.old_train, epochs=2, batch_size=batch_size)  # its learning rate too: speed is measured
        return _second_epoch_rate(fit(torch.compile(model) if compiled else model, images, labels, recipe, [CrossEntropy()], seed=0, progress=False))

    levers = {
        f"engine, batch {batch} (as the book trains)": rate(batch),
        f"torch.compile, batch {batch}": rate(batch, compiled=True),
        f"engine, batch {batch // 2}": rate(batch // 2),
        f"engine, batch {2 * batch}": rate(2 * batch),
    }
    conventional = _conventional_rate(lambda: EmbeddingModel(profile.model, classes), images, labels, batch, steps // 2, workers)
    figures = {
        "profile": profile_name,
        "images": len(images),
        "rows": [{"lever": name, "images_per_s": v, "x_conventional": v / conventional} for name, v in levers.items()],
        "conventional_images_per_s": conventional,
        "environment": environment(),
    }
    for row in figures["rows"]:
        print(f"{row['lever']:40s} {row['images_per_s']:8.0f} img/s  {row['x_conventional']:4.2f}x the conventional pipeline")
    print(f"{'conventional (JPEG + PIL + DataLoader x' + str(workers) + ', fp32)':40s} {conventional:8.0f} img/s")
    return _written(figures, out)


def bench_step_profile(profile_name: str = "cpu", steps: int = 20, top: int = 15, out: Path | None = None) -> dict:
    """Where a training step of the profile's old model spends its time: ``torch.profiler`` over the second of two
    epochs of ``steps`` batches (the first warms up), operators ranked by their own time on the calling thread
    (children excluded; an operator's intra-op threads run inside it), each as a share of the profiled epoch's
    wall time, milliseconds and calls per step; the operators below the top as one row, and the time no
    operator accounts for (Python, the loop) as the remainder of 100 %."""
    prof = get_profile(profile_name)
    data, images, labels = _training_sample(prof, steps)
    torch.manual_seed(0)
    model = EmbeddingModel(prof.model, int(labels.max()) + 1)
    recipe = dataclasses.replace(prof.old_train, epochs=2, warmup_epochs=0)
    profiler = profile(activities=[ProfilerActivity.CPU])
    clock = {}

    def second_epoch(model, epoch, raw):  # the hook after each epoch: profile the second one only
        if epoch == 1:
            profiler.start()
            clock["start"] = time.perf_counter()
        return {}

    fit(model, images, labels, recipe, [CrossEntropy()], seed=0, progress=False, on_epoch=second_epoch)
    wall = time.perf_counter() - clock["start"]
    profiler.stop()
    ops = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [
        {
            "operator": e.key,
            "share_of_step": e.self_cpu_time_total / 1e6 / wall,
            "ms_per_step": e.self_cpu_time_total / 1e3 / steps,
            "calls_per_step": e.count / steps,
        }
        for e in ops[:top]
    ]
    rest = sum(e.self_cpu_time_total for e in ops[top:])
    rows.append(
        {
            "operator": "all other operators",
            "share_of_step": rest / 1e6 / wall,
            "ms_per_step": rest / 1e3 / steps,
            "calls_per_step": None,
        }
    )
    figures = {
        "profile": profile_name,
        "model": f"{prof.model.backbone} width {prof.model.width}, {data.image_size}x{data.image_size}",
        "batch_size": recipe.batch_size,
        "steps": steps,
        "ms_per_step": wall / steps * 1e3,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "environment": environment(),
    }
    print(f"model: {figures['model']}, batch {recipe.batch_size}: {figures['ms_per_step']:.1f} ms a step over {steps} steps")
    for r in rows:
        print(f"{r['operator'][:40]:40s} {100 * r['share_of_step']:5.1f} %  {r['ms_per_step']:7.2f} ms/step")
    return _written(figures, out)
