"""Training on several processes (gloo, 2 CPU processes) against one process with the same global batch.

The tolerance, derived: with BatchNorm statistics fixed per group of images (``bn_batch``, here half
the batch), a 2-process step and a 1-process step compute the same function of the same views. Each
group's forward and backward run the same kernels on the same shapes in both; the per-group
gradients differ only by the loss's 1/batch scale (1/16 against 1/8 then halved by the all-reduce),
a power of two, which floating point applies exactly; and the two groups' gradients meet in one fp32
sum in both (the grouped forward gives each group its own bf16 weight copies for that reason). So
the runs can differ only where a sum is taken in another order, which two summands do not allow:
the weights must be equal to the bit, and we measure exactly that (0.0 at fp32 and bf16). The
tolerance, 1e-6, leaves room for one rounding (u = 2**-24 relative) if a future all-reduce splits a
sum differently, and the test checks that ignoring the BatchNorm groups (one process normalizing the
whole batch) misses it by orders of magnitude, so it can fail.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from compat import distributed
from compat.augment import simclr_view
from compat.data import make_synthetic
from compat.errors import CompatError, ConfigError
from compat.losses import CrossEntropy, NTXent, projection_head
from compat.models import EmbeddingModel, ModelConfig
from compat.store import write_atomic
from compat.train import TrainConfig, fit, grouped_forward

TOLERANCE = 1e-6
BATCH = 16


def _run(method: str, bn_batch: int, workdir=None, stop_after: int | None = None, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Train a tiny model (3 classes x 16 images, 16 x 16 pixels: 3 steps an epoch, 3 epochs) in this process,
    which may be one rank of a group; returns its weights (and the head's). ``stop_after``: raise after that epoch."""
    torch.set_num_threads(1)
    data = make_synthetic(num_classes=3, train_per_class=16, image_size=16, seed=1)
    torch.manual_seed(0)
    model = EmbeddingModel(ModelConfig("airnet", 8, 8), 3)
    config = TrainConfig(epochs=3, batch_size=BATCH, lr=0.05, warmup_epochs=1, precision=precision, ema_decay=0.5, bn_batch=bn_batch)
    kwargs = {}
    if method == "simclr":
        terms = [NTXent(head=projection_head(8))]
        kwargs = {"views": simclr_view, "num_views": 2}
    else:
        terms = [CrossEntropy()]

    def stop(_model, epoch, _raw):
        if epoch == stop_after:
            raise KeyboardInterrupt
        return {}

    fit(model, data.train.images, data.train.labels, config, terms, seed=0, progress=False, workdir=workdir, on_epoch=stop, **kwargs)
    weights = {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
    weights.update({f"terms.{k}": v.clone() for k, v in terms[0].state_dict().items()})
    return weights


def _rank(rank: int, size: int, init: str, out: str, method: str, bn_batch: int, workdir, precision: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        weights = _run(method, bn_batch, workdir, precision=precision)
        if rank == 0:
            torch.save(weights, out)
        else:
            with pytest.raises(CompatError, match="rank 1 of 2 tried to write"):
                write_atomic(out + ".rank1", b"")
    finally:
        dist.destroy_process_group()


def _two_processes(tmp_path, method: str, bn_batch: int, workdir=None, precision: str = "fp32") -> dict[str, torch.Tensor]:
    out = str(tmp_path / f"{method}-{bn_batch}.pt")
    init = f"file://{tmp_path / 'rendezvous'}"
    (tmp_path / "rendezvous").unlink(missing_ok=True)
    mp.start_processes(_rank, args=(2, init, out, method, bn_batch, workdir, precision), nprocs=2, start_method="spawn")
    assert not os.path.exists(out + ".rank1")
    return torch.load(out, weights_only=True)


def _largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("method, precision", [("supervised", "fp32"), ("supervised", "bf16"), ("simclr", "fp32")])
def test_two_processes_match_one_with_the_same_batch_norm_groups(tmp_path, method, precision):
    two = _two_processes(tmp_path, method, bn_batch=BATCH // 2, precision=precision)
    one = _run(method, bn_batch=BATCH // 2, precision=precision)
    assert _largest_difference(two, one) < TOLERANCE
    # the tolerance can fail: one process normalizing the whole batch is another computation
    assert _largest_difference(two, _run(method, bn_batch=0, precision=precision)) > 1e4 * TOLERANCE


def test_a_checkpoint_resumes_under_another_number_of_processes(tmp_path):
    uninterrupted = _run("supervised", bn_batch=BATCH // 2)
    with pytest.raises(KeyboardInterrupt):
        _run("supervised", bn_batch=BATCH // 2, workdir=tmp_path / "work", stop_after=2)
    assert torch.load(tmp_path / "work" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = _two_processes(tmp_path, "supervised", bn_batch=BATCH // 2, workdir=tmp_path / "work")
    assert _largest_difference(resumed, uninterrupted) < TOLERANCE


def test_grouped_forward_keeps_the_rows_in_order_and_only_the_first_group_updates_statistics():
    x = torch.randn(2 * 8, 3, 8, 8)  # 2 views of 8 images: rows 0-7 view 1, rows 8-15 view 2
    torch.manual_seed(0)
    model = EmbeddingModel(ModelConfig("resnet20", 2, 4), 3).train()
    embedding, _ = grouped_forward(model, x, num_views=2, group=4)
    torch.manual_seed(0)
    reference = EmbeddingModel(ModelConfig("resnet20", 2, 4), 3).train()
    first, _ = reference(torch.cat([x[0:4], x[8:12]]))  # by hand: images 0-3 with both views
    statistics = {k: v.clone() for k, v in reference.state_dict().items() if "running" in k}
    second, _ = reference(torch.cat([x[4:8], x[12:16]]))
    assert torch.allclose(embedding, torch.cat([first[:4], second[:4], first[4:], second[4:]]), atol=1e-6)
    assert statistics and all(torch.equal(model.state_dict()[k], v) for k, v in statistics.items())


def test_batch_norm_groups_larger_than_a_process_share_are_refused():
    with pytest.raises(ConfigError, match="bn_batch=5 must divide batch_size=16"):
        TrainConfig(batch_size=16, bn_batch=5)
    with pytest.raises(ConfigError, match="bn_batch"):
        TrainConfig(batch_size=16, bn_batch=32)


def _refusing_rank(rank: int, size: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        with pytest.raises(ConfigError, match=r"2 processes each hold 8 images of a step, but bn_batch=0 asks for BatchNorm statistics over 16"):
            _run("supervised", bn_batch=0)
        if rank == 0:
            write_atomic(Path(out), b"refused")
    finally:
        dist.destroy_process_group()


def test_a_group_refuses_batch_norm_groups_larger_than_a_process_share(tmp_path):
    out = tmp_path / "refused"
    mp.start_processes(_refusing_rank, args=(2, f"file://{tmp_path / 'rendezvous'}", str(out)), nprocs=2, start_method="spawn")
    assert out.read_bytes() == b"refused"
    assert distributed.world() == (0, 1) and distributed.is_writer()  # this test process: a single writer


def test_torchrun_runs_an_experiment_to_the_same_result_files_as_one_process(tmp_path):
    """The CLI under ``torchrun --nproc_per_node 2`` (gloo): rank 0 runs the smoke BCT table, rank 1 helps train its
    four models; result files and models are identical to a single process's (each model's log says 2 processes)."""
    sets = ["--set", "protocol.seeds=0", "--set", "bct.ablation=false"]
    for section in ("old_train", "new_train"):
        sets += ["--set", f"{section}.epochs=1", "--set", f"{section}.warmup_epochs=0.5", "--set", f"{section}.bn_batch=32"]
    command = ["-m", "compat", "run", "bct", "--profile", "smoke", *sets]
    launchers = {"one": [sys.executable], "two": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]}
    for name, launcher in launchers.items():
        env = {
            **os.environ,
            "COMPAT_CACHE": str(tmp_path / name / "cache"),
            "COMPAT_RESULTS": str(tmp_path / name / "results"),
            "OMP_NUM_THREADS": "1",
            "COMPAT_TRAIN": "allow",
        }
        done = subprocess.run([*launcher, *command], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one" / "results").rglob("*.npz"))
    assert files
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    metas = [json.loads(p.read_text()) for p in (tmp_path / "two" / "cache" / "models").glob("*/meta.json")]
    assert len(metas) == 4 and all(m["log"]["processes"] == 2 for m in metas)
