"""Models, the training loop (determinism, resume) and the store (keys, reuse, partial retraining)."""

import json
import multiprocessing as mp
import time

import pytest
import torch
from helpers import TINY

from compat.config import get_profile
from compat.data import make_synthetic
from compat.errors import ConfigError
from compat.losses import CrossEntropy
from compat.models import EmbeddingModel, ModelConfig
from compat.store import Store, config_key, write_json
from compat.train import TrainConfig, fit


def test_model_shapes_and_normalized_embedding():
    for backbone, width in [("resnet20", 4), ("resnet18", 4), ("resnet10", 4)]:
        model = EmbeddingModel(ModelConfig(backbone, width, 16), num_classes=7)
        z, logits = model(torch.randn(3, 3, 32, 32))
        assert z.shape == (3, 16) and logits.shape == (3, 7)
        assert model.classifier.bias is None
    unit = EmbeddingModel(ModelConfig("resnet20", 4, 16, normalize_embedding=True), 7).eval()
    assert torch.allclose(unit.embed(torch.randn(2, 3, 64, 64)).norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ConfigError, match="unknown backbone 'vit'"):
        ModelConfig("vit")


class InterruptAfter(CrossEntropy):
    """Cross-entropy that raises KeyboardInterrupt at its n-th call, as a killed run would stop."""

    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def forward(self, out):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt
        return super().forward(out)


def _tiny_run(workdir=None, epochs=2, seed=0, term=None):
    data = make_synthetic(num_classes=4, train_per_class=16, image_size=16, seed=1)  # 64 images: 4 steps of 16
    torch.manual_seed(seed)
    model = EmbeddingModel(ModelConfig("resnet20", 2, 8), 4)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=0.05, warmup_epochs=1, precision="fp32")
    terms = [term or CrossEntropy()]
    log = fit(model, data.train.images, data.train.labels, cfg, terms, seed=seed, workdir=workdir, progress=False)
    return model, log


def test_same_seed_same_weights_on_cpu():
    a, _ = _tiny_run()
    b, _ = _tiny_run()
    c, _ = _tiny_run(seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.reliability(
    fault="training killed between epochs", behaviour="the rerun resumes from the last checkpoint to the same weights as an uninterrupted run"
)
def test_resume_from_checkpoint_gives_the_uninterrupted_result(tmp_path):
    full, log = _tiny_run(epochs=3)
    with pytest.raises(KeyboardInterrupt):
        _tiny_run(workdir=tmp_path, epochs=3, term=InterruptAfter(calls=9))  # dies in epoch 3, step 2
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 2
    resumed, resumed_log = _tiny_run(workdir=tmp_path, epochs=3)
    assert [e["epoch"] for e in resumed_log["epochs"]] == [1, 2, 3]
    assert all(torch.equal(x, y) for x, y in zip(full.state_dict().values(), resumed.state_dict().values()))
    assert log["precision"] == "fp32" and len(log["epochs"]) == 3


def test_config_key_is_stable_and_sensitive():
    a = get_profile("cpu")
    assert config_key(a) == config_key(get_profile("cpu"))
    assert config_key(a) != config_key(get_profile("cpu", {"old_train.epochs": "11"}))


def _writer(path, value):
    for _ in range(50):
        write_json(path, {"value": value, "payload": list(range(2000))})


@pytest.mark.reliability(fault="two processes writing the same file", behaviour="one complete file; never a mixture")
def test_concurrent_writers_never_leave_a_corrupt_file(tmp_path):
    path = tmp_path / "r.json"
    procs = [mp.Process(target=_writer, args=(path, v)) for v in (1, 2)]
    for p in procs:
        p.start()
    for _ in range(200):
        if path.exists():
            assert json.loads(path.read_text())["value"] in (1, 2)
    for p in procs:
        p.join()
    assert json.loads(path.read_text())["value"] in (1, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_rerun_reuses_and_a_changed_parameter_retrains_only_its_dependents(tmp_path, monkeypatch):
    from compat import artefacts
    from compat.experiments import get_experiment

    bct = get_experiment("bct")
    store = Store(tmp_path / "cache", tmp_path / "results")
    profile = get_profile("smoke", TINY)
    trained = []
    real_fit = artefacts.fit
    monkeypatch.setattr(artefacts, "fit", lambda *a, **k: trained.append(k["desc"]) or real_fit(*a, **k))
    first = bct.run(profile, store)
    assert len(trained) == 8  # old, independent, bct, l2, and the four ablation models
    assert len(list((tmp_path / "results" / "bct" / "smoke").glob("*.json"))) == 2  # main seed + ablation

    trained.clear()
    again = bct.run(profile, store)
    assert trained == [] and again == first  # everything loaded

    trained.clear()
    changed = get_profile("smoke", {**TINY, "new_train.lr": "0.05"})
    bct.run(changed, store)
    assert len(trained) == 7 and not any(d.startswith("plain old") for d in trained)  # the old model is reused
    rows = {(r["distance"], r["case"]): r for r in first[0]["rows"]}
    assert rows[("l2", "BCT new/old")]["gain_top1"] == pytest.approx(
        (rows[("l2", "BCT new/old")]["top1"] - rows[("l2", "old/old")]["top1"])
        / (rows[("l2", "independent new/new")]["top1"] - rows[("l2", "old/old")]["top1"])
    )
    assert first[0]["environment"]["git_revision"] and first[0]["models"]["old"]["precision"] in ("bf16", "fp32")


@pytest.mark.reliability(
    fault="a missing artefact under COMPAT_TRAIN=never (CI)", behaviour="one error naming the artefact and the command that makes it; nothing trains"
)
def test_training_can_be_forbidden_with_a_clear_error(tmp_path, monkeypatch):
    from compat.experiments import get_experiment

    bct = get_experiment("bct")
    monkeypatch.setenv("COMPAT_TRAIN", "never")
    with pytest.raises(ConfigError, match="COMPAT_TRAIN=never forbids training"):
        bct.run(get_profile("smoke", TINY), Store(tmp_path / "c", tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_the_strided_pointwise_convolution_equals_a_strided_1x1_convolution_and_survives_channels_last():
    from compat.models import StridedPointwise

    torch.manual_seed(0)
    layer = StridedPointwise(2, 4, 2)
    for _ in range(50):  # the crashing kernel corrupted the heap within a few calls at 2 channels
        x = torch.randn(8, 2, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_()
        layer(x).sum().backward()
    reference = torch.nn.functional.conv2d(x.detach().contiguous(), layer.weight.detach(), stride=2)
    assert torch.allclose(layer(x.detach()), reference, atol=1e-6)
    assert list(layer.state_dict()) == ["weight"] and layer.weight.shape == (4, 2, 1, 1)


def _spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_each_epoch_records_its_share_of_the_cores_and_a_competing_job_lowers_it():
    """The budget tells quiet epochs from contested ones by ``cpu_share`` (process CPU time over wall time and
    threads); two busy processes beside a one-thread training take a third or more of its share."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        quiet = [e["cpu_share"] for e in _tiny_run(epochs=6)[1]["epochs"]]
        spinners = [mp.get_context("spawn").Process(target=_spin, args=(60,)) for _ in range(2)]
        for p in spinners:
            p.start()
        time.sleep(1.0)  # the spinners are running
        try:
            contested = [e["cpu_share"] for e in _tiny_run(epochs=6)[1]["epochs"]]
        finally:
            for p in spinners:
                p.terminate()
                p.join()
    finally:
        torch.set_num_threads(threads)
    assert all(0 < s <= 1.05 for s in quiet + contested)
    assert sum(contested) / len(contested) < sum(quiet) / len(quiet) - 0.1
