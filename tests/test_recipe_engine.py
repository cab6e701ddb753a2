"""The recipe study's engine pieces against oracles: patch whitening whitens, EMA resumes exactly,
a NaN loss stops training at once, collapsed or non-learning runs are reported as diverged."""

import numpy as np
import pytest
import torch

from compat.divergence import TrainingDiverged
from compat.errors import ConfigError
from compat.experiments.common import collapsed, evaluate_cases
from compat.losses import CrossEntropy, LossTerm
from compat.models import EmbeddingModel, ModelConfig, PatchWhitening
from compat.train import TrainConfig, embed, fit


def test_patch_whitening_makes_the_patch_covariance_the_identity():
    torch.manual_seed(0)
    mix = torch.randn(3, 3)
    x = torch.einsum("ij,bjhw->bihw", mix, torch.randn(64, 3, 12, 12)).cumsum(dim=3)  # correlated channels and pixels
    layer = PatchWhitening(eps=0.0)
    layer.fit(x)
    out = layer(x)[:, :12]  # B x 12 x 11 x 11: the positive half of the filters
    cov = torch.cov(out.permute(1, 0, 2, 3).reshape(12, -1))
    assert torch.allclose(cov, torch.eye(12), atol=1e-3)
    assert torch.equal(layer(x)[:, 12:], -layer(x)[:, :12]) and not layer.conv.weight.requires_grad


def _data(n=96, classes=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = (rng.random((n, size, size, 3)) * 80 + labels[:, None, None, None] * 40).astype(np.uint8)
    return images, labels


def test_ema_weights_become_the_model_and_a_seed_repeats_exactly(tmp_path):
    images, labels = _data()
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, warmup_epochs=1, ema_decay=0.9, precision="fp32")

    def trained(cfg):
        torch.manual_seed(0)
        m = EmbeddingModel(ModelConfig("airnet", width=4, embedding_dim=8), 4)
        fit(m, images, labels, cfg, [CrossEntropy()], seed=1)
        return m

    a, b = trained(config), trained(config)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    plain = trained(TrainConfig(**{**config.__dict__, "ema_decay": 0.0}))
    assert not torch.equal(plain.embedding.weight, a.embedding.weight)


def test_resume_after_an_interruption_matches_an_uninterrupted_ema_run(tmp_path):
    images, labels = _data()
    config = TrainConfig(epochs=3, batch_size=32, lr=0.05, warmup_epochs=1, ema_decay=0.9, precision="fp32")

    def model():
        torch.manual_seed(0)
        return EmbeddingModel(ModelConfig("airnet", width=4, embedding_dim=8), 4)

    whole = model()
    fit(whole, images, labels, config, [CrossEntropy()], seed=3, workdir=tmp_path / "whole")

    class Stop(Exception):
        pass

    def stop_after_two(model, epoch, _raw):
        if epoch == 2:
            raise Stop
        return {}

    broken = model()
    with pytest.raises(Stop):
        fit(broken, images, labels, config, [CrossEntropy()], seed=3, workdir=tmp_path / "broken", on_epoch=stop_after_two)
    resumed = model()  # a fresh process: new weights, the checkpoint of epoch 1 on disk
    fit(resumed, images, labels, config, [CrossEntropy()], seed=3, workdir=tmp_path / "broken")
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


class Explodes(LossTerm):
    name = "explodes"

    def forward(self, out):
        return out.embedding.sum() * float("nan")


@pytest.mark.reliability(fault="a NaN loss", behaviour="training stops at once, naming the step, the epoch, the terms and the learning rate")
def test_a_nan_loss_stops_training_at_once_naming_step_epoch_and_lr():
    images, labels = _data()
    model = EmbeddingModel(ModelConfig("resnet20", width=2, embedding_dim=8), 4)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 1 .*explodes=nan.*lr=0\.05"):
        fit(model, images, labels, TrainConfig(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0), [CrossEntropy(), Explodes()], seed=0)


@pytest.mark.reliability(fault="a model whose embeddings collapsed", behaviour="reported as diverged; no number reaches a table")
def test_collapsed_embeddings_are_detected_and_never_tabulated():
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 4
    good = rng.normal(size=(40, 8)).astype(np.float32)
    constant = np.ones((40, 8), np.float32)
    assert collapsed(good) is None and "constant embeddings" in collapsed(constant)
    rows, per_query = evaluate_cases(
        {"old": good, "new": constant},
        labels,
        [("old/old", "old", "old"), ("new/new", "new", "new"), ("new/old", "new", "old")],
        ["l2"],
        lambda case: ("old/old", "new/new"),
    )
    by_case = {r["case"]: r for r in rows}
    assert by_case["new/old"]["top1"] is None and "constant embeddings" in by_case["new/old"]["diverged"]
    assert by_case["new/old"]["gain_top1"] is None and "l2|new/old|rank" not in per_query
    assert by_case["old/old"]["top1"] is not None and "l2|old/old|rank" in per_query


class Rising(LossTerm):
    """A term that grows with every step (and trains nothing): the loss rises while nothing is learned."""

    name = "rising"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, out):
        self.calls += 1
        return 0.0 * out.embedding.sum() + float(self.calls)


@pytest.mark.reliability(fault="a run that ends at chance accuracy with a rising loss", behaviour="marked diverged in its log and its result file")
def test_a_run_at_chance_whose_loss_rose_is_marked_diverged():
    images, labels = _data()
    stuck = EmbeddingModel(ModelConfig("resnet20", width=2, embedding_dim=8), 4)
    log = fit(stuck, images, labels, TrainConfig(epochs=3, batch_size=32, lr=1e-9, warmup_epochs=0), [CrossEntropy(), Rising()], seed=0)
    assert "chance level" in log["diverged"] and "loss rose" in log["diverged"]
    learned = fit(
        EmbeddingModel(ModelConfig("resnet20", width=4, embedding_dim=8), 4),
        images,
        labels,
        TrainConfig(epochs=6, batch_size=32, lr=0.1, warmup_epochs=0),
        [CrossEntropy(), Rising()],
        seed=0,
    )
    assert learned["epochs"][-1]["train_acc"] > 0.5 and learned["diverged"] is None  # the loss rose, but it learned


def test_flip_averaged_embeddings_are_the_mean_of_image_and_mirror():
    images, _ = _data(n=8)
    torch.manual_seed(0)
    model = EmbeddingModel(ModelConfig("resnet20", width=2, embedding_dim=8), 4).eval()
    plain, mirrored = embed(model, images, precision="fp32"), embed(model, images[:, :, ::-1], precision="fp32")
    np.testing.assert_allclose(embed(model, images, precision="fp32", flip=True), (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)


def test_loss_terms_follow_the_model_to_its_device():
    from compat.losses import InfluenceLoss

    term = InfluenceLoss(torch.ones(3, 2))
    moved = term.to("meta")
    assert moved.classifier.device.type == "meta"
    with pytest.raises(ConfigError):
        TrainConfig(ema_decay=1.0)


def test_ema_decay_warms_up_as_tensorflow_num_updates():
    from compat.averaging import ema_step

    step = ema_step(0.999)
    avg, new = torch.zeros(1), torch.ones(1)
    assert float(step(avg, new, torch.tensor(0))) == pytest.approx(1 - 1 / 10)  # decay (1 + 0) / (10 + 0)
    assert float(step(avg, new, torch.tensor(90))) == pytest.approx(1 - 91 / 100)
    assert float(step(avg, new, torch.tensor(10**6))) == pytest.approx(1 - 0.999)  # capped at the configured decay
