"""The recipe study's training options against hand-written oracles: lookahead, BatchNorm with fixed scales and
a bias learning-rate multiplier, the whitening bias, alternating flips in training, one-pixel test-time shifts."""

import copy

import numpy as np
import pytest
import torch

from compat.averaging import Lookahead
from compat.errors import ConfigError
from compat.losses import CrossEntropy
from compat.models import EmbeddingModel, ModelConfig
from compat.train import TrainConfig, _param_groups, embed, fit


def _data(n=64, classes=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = (rng.random((n, size, size, 3)) * 80 + labels[:, None, None, None] * 40).astype(np.uint8)
    return images, labels


def _model(**options):
    torch.manual_seed(0)
    return EmbeddingModel(ModelConfig("airnet", width=4, embedding_dim=8, **options), 4)


def test_lookahead_pulls_a_slow_copy_on_its_schedule_and_writes_it_into_the_weights():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    la = Lookahead(model, every=2, total=4)
    slow = 0.0
    for step in range(4):
        with torch.no_grad():
            model.weight.add_(1.0)  # an optimizer step
        la.step(step)
        if (step + 1) % 2 == 0:  # the oracle: slow += (1 - d) (w - slow), then w = slow, d = 0.95^5 (t / T)^3
            d = 0.95**5 * ((step + 1) / 4) ** 3
            slow += (1 - d) * ((slow + 2.0) - slow)  # two unit steps since the last pull
            assert model.weight.item() == pytest.approx(slow)
        else:
            assert model.weight.item() == pytest.approx(slow + 1.0)  # between pulls the weights move freely
    with torch.no_grad():
        model.weight.add_(5.0)
    la.finish()
    assert model.weight.item() == pytest.approx(slow)  # the run ends on the slow weights


def test_lookahead_and_ema_are_one_choice():
    with pytest.raises(ConfigError, match="choose one weight average"):
        TrainConfig(lookahead_every=5, ema_decay=0.99)


def test_fixed_batchnorm_scales_stay_one_and_biases_get_their_own_learning_rate():
    images, labels = _data()
    model = _model()
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0, bn_frozen_scale=True, bn_bias_lr=64.0, precision="fp32")
    before = copy.deepcopy(model)
    fit(model, images, labels, config, [CrossEntropy()], seed=0, progress=False)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.weight.requires_grad for m in norms)
    assert any(not torch.equal(m.bias, b.bias) for m, b in zip(norms, (m for m in before.modules() if isinstance(m, torch.nn.BatchNorm2d))))
    groups = _param_groups([_model()], config)
    bias_ids = {id(m.bias) for m in _model().modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0, 64.0]
    assert len(groups[2]["params"]) == len(bias_ids) and groups[2]["weight_decay"] == 0.0


def test_whitening_bias_is_trained_after_frozen_filters_and_needs_airnet():
    images, labels = _data()
    model = _model(whiten_bias=True)
    fit(model, images, labels, TrainConfig(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0), [CrossEntropy()], seed=0, progress=False)
    conv = model.backbone.whiten.conv
    assert not conv.weight.requires_grad and conv.bias.requires_grad and conv.bias.abs().sum() > 0
    assert isinstance(model.backbone.whiten.act, torch.nn.GELU)
    with pytest.raises(ConfigError, match="whiten_bias"):
        ModelConfig("resnet20", whiten_bias=True)


def test_alternating_flips_train_and_repeat_with_a_seed():
    images, labels = _data()
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0, crop_padding=2, crop_fill="reflect", flip_mode="alternating")
    a, b = _model(), _model()
    for m in (a, b):
        fit(m, images, labels, config, [CrossEntropy()], seed=1, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_one_pixel_test_time_shifts_are_airbenchs_weighted_mean_of_shifted_flip_averages():
    images, _ = _data(n=6)
    model = _model().eval()
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    down_right, up_left = padded[:, :16, :16], padded[:, 2:, 2:]
    oracle = (
        0.5 * embed(model, images, precision="fp32", flip=True)
        + 0.25 * embed(model, down_right, precision="fp32", flip=True)
        + 0.25 * embed(model, up_left, precision="fp32", flip=True)
    )
    np.testing.assert_allclose(embed(model, images, precision="fp32", flip=True, translate=True), oracle, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="flip=True"):
        embed(model, images, translate=True)


def test_the_probe_sees_raw_weights_only_where_an_average_is_kept():
    images, labels = _data()
    seen = []
    for extra in ({}, {"ema_decay": 0.9}, {"lookahead_every": 2}):
        config = TrainConfig(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0, **extra)
        fit(
            _model(),
            images,
            labels,
            config,
            [CrossEntropy()],
            seed=0,
            progress=False,
            on_epoch=lambda model, epoch, raw: seen.append(raw is not None and raw is not model) or {},
        )
    assert seen == [False, True, True]
