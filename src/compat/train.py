"""One training loop for every method: pluggable loss terms, fast on a 2-core CPU, same code on a GPU.

The uint8 training set is held in memory as one tensor; each batch is cropped, flipped and
normalized as a tensor (:mod:`compat.augment`), fed in channels_last memory with bf16
autocast where the processor supports it. SGD with linear warm-up and cosine decay, per
step (:mod:`compat.schedule`). A checkpoint is written atomically after every epoch and a run resumes
from it (:mod:`compat.checkpoints`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import distributed
from .augment import alternating_flips, random_crop_flip, to_input
from .averaging import WeightAverage
from .checkpoints import Checkpoints
from .divergence import check_finite, divergence_verdict
from .errors import ConfigError, check_choice, check_range
from .losses import LossTerm, StepOutputs
from .progress import show_progress
from .schedule import lr_factor, set_learning_rate
from .store import ADDED_OPTION

PRECISIONS = ("auto", "bf16", "fp32")
CROP_FILLS = ("zero", "reflect")
FLIP_MODES = ("random", "alternating")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe of one model.

    :param epochs: passes over the training subset.
    :param batch_size: images per step.
    :param lr: peak SGD learning rate (after warm-up).
    :param momentum: SGD momentum (Nesterov).
    :param weight_decay: L2 penalty on conv/linear weights (not on BatchNorm or biases).
    :param warmup_epochs: linear warm-up length; cosine decay to zero afterwards.
    :param label_smoothing: of the cross-entropy terms (0.1 in the FCT code).
    :param crop_padding: random-crop shift in pixels (0 turns cropping off).
    :param precision: ``auto`` (bf16 where supported), ``bf16`` or ``fp32``.
    :param ema_decay: per-step decay of an exponential moving average of the weights, which then
        becomes the trained model (airbench's lookahead/EMA idea); 0 turns it off.
    :param threads: CPU threads of training and embedding, pinned (a CPU run's numbers depend on how its
        reductions are split), so one key is one set of numbers on any machine.
    :param lookahead_every: airbench's lookahead (Jordan 2024, arXiv 2404.00498, Sec. 3.6): every this many steps a
        slow copy moves towards the weights, ``slow += (1 - d) (w - slow)`` with ``d = 0.95^5 (t / T)^3`` at step t
        of T, and the weights are set to it; at the end the weights are the slow copy. 0 turns it off (it
        replaces ``ema_decay``, which must then be 0).
    :param bn_bias_lr: learning-rate multiplier of the BatchNorm biases (airbench: 64, with ``bn_frozen_scale``).
    :param bn_frozen_scale: BatchNorm scales stay at 1 (not trained), as airbench's BatchNorm(weight=False).
    :param crop_fill: how the random translation fills the border: ``zero`` or ``reflect`` (airbench).
    :param flip_mode: ``random`` (each image, each epoch, p = 1/2) or ``alternating`` (airbench: a random
        flip in the first epoch, then each image flips opposite to the epoch before).
    :param bn_batch: images per BatchNorm statistics group (0: the whole batch). Several processes
        (``torchrun``) each normalize their own share of the batch, so a multi-process run needs groups no
        larger than that share; a single process then normalizes the same groups ("ghost" batches),
        and the numbers do not depend on the number of processes.
    """

    epochs: int = 8
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    crop_padding: int = 4
    precision: str = "auto"
    ema_decay: float = 0.0
    threads: int = field(default=2, metadata=ADDED_OPTION)
    bn_batch: int = field(default=0, metadata=ADDED_OPTION)
    lookahead_every: int = field(default=0, metadata=ADDED_OPTION)
    bn_bias_lr: float = field(default=1.0, metadata=ADDED_OPTION)
    bn_frozen_scale: bool = field(default=False, metadata=ADDED_OPTION)
    crop_fill: str = field(default="zero", metadata=ADDED_OPTION)
    flip_mode: str = field(default="random", metadata=ADDED_OPTION)

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, 1, 10_000)
        check_range("batch_size", self.batch_size, 1, 65_536)
        check_range("lr", self.lr, 0, 100, low_open=True)
        check_range("momentum", self.momentum, 0, 1, high_open=True)
        check_range("weight_decay", self.weight_decay, 0, 1)
        check_range("warmup_epochs", self.warmup_epochs, 0, self.epochs)
        check_range("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        check_range("crop_padding", self.crop_padding, 0, 64)
        check_choice("precision", self.precision, PRECISIONS)
        check_range("ema_decay", self.ema_decay, 0, 1, high_open=True)
        check_range("threads", self.threads, 1, 1024)
        check_range("bn_batch", self.bn_batch, 0, self.batch_size)
        check_range("lookahead_every", self.lookahead_every, 0, 1000)
        if self.lookahead_every and self.ema_decay:
            raise ConfigError(
                f"lookahead_every={self.lookahead_every} and ema_decay={self.ema_decay}: choose one weight average (set the other to 0)"
            )
        check_range("bn_bias_lr", self.bn_bias_lr, 0, 1000, low_open=True)
        check_choice("crop_fill", self.crop_fill, CROP_FILLS)
        check_choice("flip_mode", self.flip_mode, FLIP_MODES)
        if self.bn_batch and self.batch_size % self.bn_batch:
            raise ConfigError(f"bn_batch={self.bn_batch} must divide batch_size={self.batch_size} (or be 0: the whole batch)")


def crop_flip_view(
    batch: torch.Tensor, generator: torch.Generator, padding: int, fill: str = "zero", flips: torch.Tensor | None = None
) -> torch.Tensor:
    """The supervised training view: random crop with ``padding`` (border ``fill``) and flip, normalized."""
    return to_input(random_crop_flip(batch, padding, generator, fill, flips))


@contextmanager
def pinned_threads(threads: int):
    """Run the block with torch's intra-op CPU thread count set to ``threads``, then restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def device() -> torch.device:
    """CUDA when present, else the CPU (threads: torch's default, all cores, or OMP_NUM_THREADS)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(requested: str, dev: torch.device) -> str:
    """``bf16`` where autocast to bfloat16 is fast here (CUDA, or a CPU with native bf16), else ``fp32``."""
    if requested != "auto":
        return requested
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def _param_groups(modules: Sequence[torch.nn.Module], config: TrainConfig) -> list[dict]:
    """Trainable parameters of ``modules``: weight decay on matrices and filters, none on BatchNorm and biases;
    BatchNorm biases at ``bn_bias_lr`` times the learning rate (each group's ``lr_scale``)."""
    norm_biases = {id(m.bias) for mod in modules for m in mod.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None}
    decay, no_decay, biases = [], [], []
    for p in (p for m in modules for p in m.parameters()):
        if p.requires_grad:
            (biases if id(p) in norm_biases else decay if p.ndim > 1 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay, "lr_scale": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
        {"params": biases, "weight_decay": 0.0, "lr_scale": config.bn_bias_lr},
    ]
    return [g for g in groups if g["params"]]


def freeze_norm_scales(model: nn.Module) -> None:
    """BatchNorm scales fixed at 1 and not trained (airbench's BatchNorm with ``weight=False``)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            with torch.no_grad():
                m.weight.fill_(1.0)
            m.weight.requires_grad_(False)


@contextmanager
def _running_statistics_frozen(model: nn.Module):
    """BatchNorm layers normalize with the batch's own statistics but leave their running averages alone."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True


def grouped_forward(model: nn.Module, x: torch.Tensor, num_views: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``model(x)`` with BatchNorm statistics over groups of ``group`` images (each with all its views: rows are
    view 1 of the images, then view 2, ...). Only the first group updates the running averages, as only rank 0's
    are kept in a multi-process run, so one process with groups equals several processes with one group each."""
    images = len(x) // num_views
    if group >= images:
        return model(x)
    views = x.unflatten(0, (num_views, images))
    outputs = []
    for start in range(0, images, group):
        chunk = views[:, start : start + group].flatten(0, 1)
        torch.clear_autocast_cache()  # each group its own bf16 weight copies: their gradients meet in fp32, as across ranks
        if start == 0:
            outputs.append(model(chunk))
        else:
            with _running_statistics_frozen(model):
                outputs.append(model(chunk))

    def reassemble(parts: list[torch.Tensor]) -> torch.Tensor:  # groups of (views x group) rows -> views x images rows
        return torch.stack([p.unflatten(0, (num_views, group)) for p in parts], 1).flatten(0, 2)

    return tuple(reassemble([out[i] for out in outputs]) for i in range(2))


class _Step(nn.Module):
    """One training step's forward: the model over BatchNorm groups, then the loss terms. One module, so that
    DistributedDataParallel averages the terms' trainable parameters (SimCLR's head) with the model's."""

    def __init__(self, model: nn.Module, terms: Sequence[LossTerm], num_views: int, group: int) -> None:
        super().__init__()
        self.model, self.terms = model, nn.ModuleList(terms)
        self.num_views, self.group = num_views, group

    def forward(self, x: torch.Tensor, y: torch.Tensor, y_all: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        embedding, logits = grouped_forward(self.model, x, self.num_views, self.group)
        out = StepOutputs(x, y, embedding, logits)
        whole = out
        if distributed.world()[1] > 1 and any(t.couples_batch for t in self.terms):
            gather = partial(distributed.gather_rows, num_views=self.num_views)
            whole = StepOutputs(None, y_all, gather(embedding), gather(logits))
        return logits, {t.name: t(whole if t.couples_batch else out) for t in self.terms}


def _broadcast_buffers(model: nn.Module) -> None:
    """Every rank takes rank 0's BatchNorm running averages (the ones a multi-process run keeps)."""
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def _check_arguments(images: np.ndarray, labels: np.ndarray, config: TrainConfig, terms: Sequence[LossTerm], views, num_views: int) -> None:
    """One clear error for arguments of :func:`fit` that cannot train, before any work."""
    if len(images) != len(labels):
        raise ConfigError(f"{len(images)} images but {len(labels)} labels")
    if not terms:
        raise ConfigError("no loss terms given")
    check_range("num_views", num_views, 1, 16)
    if views is not None and config.flip_mode != "random":
        raise ConfigError(f"flip_mode={config.flip_mode!r} applies to the crop-and-flip view; this method makes its own views")


@dataclass
class _Loop:
    """What every epoch of one :func:`fit` call shares: the data on the device, the views, the sharding, the
    optimizer, the weight average and the schedule (fixed before the first epoch)."""

    model: nn.Module
    images: np.ndarray
    data: torch.Tensor
    targets: torch.Tensor
    terms: list[LossTerm]
    config: TrainConfig
    shard: distributed.Sharding
    make_view: Callable
    num_views: int
    first_flips: torch.Tensor | None
    optimizer: torch.optim.Optimizer
    average: WeightAverage
    precision: str
    seed: int
    desc: str
    show: bool

    def __post_init__(self) -> None:
        self.classifies = any(t.classifies for t in self.terms)
        step_module = _Step(self.model, self.terms, self.num_views, self.shard.group)
        # no classifying term: the classifier is unused
        ddp = partial(DistributedDataParallel, find_unused_parameters=not self.classifies, broadcast_buffers=False)
        self.runner = ddp(step_module) if self.shard.size > 1 else step_module
        self.steps_per_epoch = max(1, len(self.data) // self.config.batch_size)  # drop the last partial batch
        self.total = self.steps_per_epoch * self.config.epochs
        self.warmup = int(round(self.config.warmup_epochs * self.steps_per_epoch))

    def _batch(self, order: torch.Tensor, epoch: int, step: int, generator: torch.Generator):
        """Step ``step``'s views of this process's share of the global batch, its labels, and every rank's labels."""
        idx = order[step * self.config.batch_size : (step + 1) * self.config.batch_size]
        flips = {} if self.first_flips is None else {"flips": alternating_flips(self.first_flips[idx.cpu()], epoch)}
        x = torch.cat([self.shard.local(self.make_view(self.data[idx], generator, **flips)) for _ in range(self.num_views)])
        return x, self.targets[self.shard.local(idx)].repeat(self.num_views), self.targets[idx].repeat(self.num_views)

    def train_epoch(self, epoch: int) -> dict:
        """Train epoch ``epoch`` (0-based); its log entry: mean loss terms, the terms' figures, accuracy, speed."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)  # resumable: one stream per epoch
        order = torch.randperm(len(self.data), generator=generator).to(self.data.device)
        if self.shard.size > 1:
            _broadcast_buffers(self.model)
        for t in self.terms:
            if hasattr(t, "start_epoch"):  # e.g. UniBCT's prototype refresh, from the model as it is now
                t.start_epoch(epoch, self.config.epochs, lambda: embed(self.model, self.images))
        self.model.train()
        sums: dict[str, float] = {}
        correct = seen = 0
        epoch_start, epoch_cpu = time.perf_counter(), time.process_time()
        bar = tqdm(range(self.steps_per_epoch), desc=f"{self.desc} {epoch + 1}/{self.config.epochs}", disable=not self.show, leave=False)
        for step in bar:
            x, y, y_all = self._batch(order, epoch, step, generator)
            global_step = epoch * self.steps_per_epoch + step
            lr = self.config.lr * lr_factor(global_step, self.warmup, self.total)
            set_learning_rate(self.optimizer, lr)
            with torch.autocast(self.data.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                logits, values = self.runner(x, y, y_all)
                loss = sum(values.values())
            check_finite(loss, values, desc=self.desc, epoch=epoch, step=step, lr=lr, base_lr=self.config.lr)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.average.update(global_step)
            for name, v in values.items():
                sums[name] = sums.get(name, 0.0) + float(v.detach())
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if self.show and step % 10 == 0:
                rate = seen / (time.perf_counter() - epoch_start)
                bar.set_postfix(loss=f"{float(loss):.3f}", acc=f"{correct / seen:.3f}" if self.classifies else "-", img_s=f"{rate:.0f}")
        seconds = time.perf_counter() - epoch_start
        cpu_share = (time.process_time() - epoch_cpu) / (seconds * torch.get_num_threads())
        figures = {k: v for t in self.terms if hasattr(t, "epoch_figures") for k, v in t.epoch_figures().items()}
        if self.shard.size > 1:  # the epoch's figures over every rank: mean of the ranks' losses and terms' figures, all images
            totals = torch.tensor([*sums.values(), *figures.values(), correct, seen], dtype=torch.float64)
            dist.all_reduce(totals)
            sums = {k: float(v) / self.shard.size for k, v in zip(sums, totals)}
            figures = {k: float(v) / self.shard.size for k, v in zip(figures, totals[len(sums) :])}
            correct, seen = int(totals[-2]), int(totals[-1])
        return {
            "epoch": epoch + 1,
            **{f"loss_{k}": v / self.steps_per_epoch for k, v in sums.items()},
            **figures,
            "train_acc": correct / seen if self.classifies else None,
            "images_per_s": seen / seconds,  # every view counts: the model's throughput
            "seconds": seconds,
            # this process's CPU time over the cores it may use: near 1 on a quiet machine, about half when another
            # job shares the cores (the budget marks such epochs as contested)
            "cpu_share": cpu_share,
        }

    def state(self, epoch: int, log: list[dict], branched: int | None) -> dict:
        """The checkpoint after ``epoch`` (1-based) epochs: model, optimizer, weight averages, log, stateful terms."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "log": json.dumps(log),
            "branched_at_epoch": branched,
            "terms": {str(i): t.state_dict() for i, t in enumerate(self.terms) if t.stateful or any(p.requires_grad for p in t.parameters())},
            **self.average.state_dict(),
        }

    def restore(self, state: dict) -> tuple[int, list[dict]]:
        """Load a checkpoint (see :meth:`state`); the epochs it has done and their log."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.average.load_state_dict(state)
        for i, term_state in state["terms"].items():
            self.terms[int(i)].load_state_dict(term_state)
        return state["epoch"], json.loads(state["log"])


def fit(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    terms: Sequence[LossTerm],
    *,
    seed: int,
    workdir: Path | None = None,
    desc: str = "train",
    progress: bool | None = None,
    views: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    num_views: int = 1,
    on_epoch: Callable[[torch.nn.Module, int, torch.nn.Module | None], dict] | None = None,
    keep_epochs: Collection[int] = (),
    branch: Path | None = None,
) -> dict:
    """Train ``model`` in place on uint8 N x H x W x 3 ``images`` with class ``labels`` 0..C-1.

    The loop is made of parts, each its own unit: the sharding of a batch between processes
    (:class:`compat.distributed.Sharding`), checkpoints and resuming (:class:`compat.checkpoints.Checkpoints`),
    weight averages (:class:`compat.averaging.WeightAverage`), the schedule (:mod:`compat.schedule`) and the
    divergence watch (:mod:`compat.divergence`).

    :param terms: the loss terms; the step's loss is their sum (each holds its own weight).
    :param seed: fixes initialisation order, shuffling and augmentation (a CPU run repeats exactly).
    :param workdir: where ``checkpoint.pt`` and ``log.jsonl`` go; an existing checkpoint is resumed.
    :param progress: show a tqdm bar (default: on a terminal outside CI, or when COMPAT_PROGRESS=1).
    :param views: makes one augmented, normalized view of a uint8 batch (default: the config's crop + flip).
    :param num_views: views per image in a step (2 for SimCLR): rows are view 1 of the batch, then view 2, ...
    :param on_epoch: called after each epoch with the model as it would be saved (eval mode), the epoch number
        and, where a weight average is kept (EMA, lookahead), the raw weights (else None), so one run measures
        both; what it returns joins the epoch's log entry (its time is not training time).
    :param keep_epochs: also keep the checkpoint after each of these epochs (``workdir/epoch-E.pt``): a run that
        trains exactly like this one up to epoch E branches from it instead of repeating those epochs.
    :param branch: such a kept checkpoint of another run, started from when ``workdir`` holds no checkpoint of its
        own: its model, optimizer, weight average and log up to its epoch; the loss terms start fresh (a branching
        run's terms must leave the model unchanged before that epoch, as UniBCT's prototype term off before its start).

    In a multi-process run (:mod:`compat.distributed`) every rank calls this with the same arguments: each
    takes its share of every global batch (augmented as a whole, so the views do not depend on the number of
    processes), DistributedDataParallel averages the gradients, rank 0's checkpoint is handed to the others on
    resuming, and only rank 0 writes.
    :return: the training log: per-epoch loss terms, accuracy and images/s, precision, device, wall time,
        and ``diverged`` (None, or why the run counts as diverged: training accuracy at chance while the loss rose).
    :raises TrainingDiverged: the loss became NaN or infinite (the step, epoch and learning rate named).
    """
    _check_arguments(images, labels, config, terms, views, num_views)
    shard = distributed.Sharding.of(config.batch_size, config.bn_batch)
    dev = device()
    precision = resolve_precision(config.precision, dev)
    data = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).contiguous().to(dev)  # N x 3 x H x W uint8 (a copy)
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(dev)
    terms = [t.to(dev) for t in terms]  # frozen old models and classifiers follow the model's device
    model.to(dev).to(memory_format=torch.channels_last)
    checkpoints = Checkpoints(workdir, keep_epochs)
    state, branched = checkpoints.resume(dev, branch)
    if state is None and hasattr(model, "fit_data_layers"):  # patch whitening, where the backbone has it (a resumed run has it in its checkpoint)
        sample = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:5000].to(dev)
        model.fit_data_layers(to_input(data[sample]))
    if config.bn_frozen_scale:
        freeze_norm_scales(model)
    optimizer = torch.optim.SGD(_param_groups([model, *terms], config), lr=config.lr, momentum=config.momentum, nesterov=True)
    total = max(1, len(data) // config.batch_size) * config.epochs
    first_flips = None
    if config.flip_mode == "alternating":
        first_flips = torch.rand(len(data), generator=torch.Generator().manual_seed(seed * 100_003 - 1)) < 0.5
    loop = _Loop(
        model=model,
        images=images,
        data=data,
        targets=targets,
        terms=terms,
        config=config,
        shard=shard,
        make_view=views or partial(crop_flip_view, padding=config.crop_padding, fill=config.crop_fill),
        num_views=num_views,
        first_flips=first_flips,
        optimizer=optimizer,
        average=WeightAverage(model, config.ema_decay, config.lookahead_every, total),
        precision=precision,
        seed=seed,
        desc=desc,
        show=show_progress(progress) and shard.rank == 0,
    )
    start_epoch, log = loop.restore(state) if state is not None else (0, [])
    wall_start = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        entry = loop.train_epoch(epoch)
        if on_epoch is not None:
            entry.update(on_epoch(loop.average.saved().eval(), epoch + 1, model.eval() if loop.average.kept else None))
        log.append(entry)
        checkpoints.save(entry, partial(loop.state, epoch + 1, log, branched))
    loop.average.finish()
    model.eval()
    return {
        "epochs": log,
        "branched_at_epoch": branched,
        "precision": precision,
        "device": str(dev),
        "processes": shard.size,
        "train_seconds": sum(e["seconds"] for e in log[branched or 0 :]),  # a branch's own epochs: its trunk counts the rest
        "this_call_seconds": time.perf_counter() - wall_start,
        "config": asdict(config),
        "diverged": divergence_verdict(log, labels, loop.classifies),
    }


@torch.inference_mode()
def embed(
    model: torch.nn.Module, images: np.ndarray, batch_size: int = 500, precision: str = "auto", flip: bool = False, translate: bool = False
) -> np.ndarray:
    """Embeddings (float32 N x D) of uint8 N x H x W x 3 ``images``, eval mode, no augmentation.

    :param flip: average each image's embedding with its mirror image's (airbench's test-time augmentation).
    :param translate: with ``flip``: airbench's fuller test-time augmentation (Jordan 2024, Sec. 3.7), half the
        flip-averaged embedding of the image plus a quarter each of the image shifted by one pixel up-left and
        down-right (reflection padding), each flip-averaged too.
    """
    if translate and not flip:
        raise ConfigError("translate=True averages flip-averaged views: set flip=True too")
    dev = device()
    precision = resolve_precision(precision, dev)
    model.to(dev).eval()

    def mirrored(x: torch.Tensor) -> torch.Tensor:
        return (model.embed(x) + model.embed(x.flip(3))) / 2 if flip else model.embed(x)

    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start : start + batch_size])).permute(0, 3, 1, 2).to(dev)  # a writable copy
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            x = to_input(batch)
            z = mirrored(x)
            if translate:
                h, w = x.shape[2:]
                padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
                shifted = [padded[:, :, :h, :w], padded[:, :, 2:, 2:]]
                z = (
                    0.5 * z
                    + 0.25 * mirrored(shifted[0].contiguous(memory_format=torch.channels_last))
                    + 0.25 * mirrored(shifted[1].contiguous(memory_format=torch.channels_last))
                )
        out.append(z.float().cpu().numpy())
    return np.concatenate(out)
