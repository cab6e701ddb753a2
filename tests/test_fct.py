"""FCT: the transformation h, BatchNorm freezing, the no-side-info path, NT-Xent against its formula,
SimCLR views, the gallery upgrade from stored vectors only, and the experiment on a tiny profile."""

import dataclasses
import inspect
import math

import numpy as np
import pytest
import torch
from test_models_train import TINY

from compat.augment import simclr_view
from compat.config import get_profile
from compat.data import make_synthetic
from compat.errors import ConfigError
from compat.losses import NTXent, StepOutputs
from compat.models import EmbeddingModel, ModelConfig
from compat.store import ADDED_OPTION, Store, canonical, config_key
from compat.train import TrainConfig, fit
from compat.transformations import (
    TRANSFORMATIONS,
    FCTTransformation,
    TransformationConfig,
    VectorTransformation,
    build_transformation,
    fit_transformation,
    freeze_batchnorm,
    register_transformation,
    upgrade_gallery,
)


def test_transformation_shapes_follow_the_official_layout():
    h = FCTTransformation(16, 4, 12, TransformationConfig(inner_dim=32))
    linear = [(m.in_features, m.out_features) for m in h.modules() if isinstance(m, torch.nn.Linear)]
    # old branch d_old -> 2 d_old -> 2 d_new; side branch d_side -> 2 d_side -> 2 d_new; mixer 4 d_new -> inner -> inner -> d_new
    assert linear == [(16, 32), (32, 24), (4, 8), (8, 24), (48, 32), (32, 32), (32, 12)]
    assert h(torch.randn(5, 16), torch.randn(5, 4)).shape == (5, 12)
    with pytest.raises(ConfigError, match="side-information must be N x 4"):
        h(torch.randn(5, 16), torch.randn(5, 8))
    with pytest.raises(ConfigError, match="5 old embeddings but 3"):
        h(torch.randn(5, 16), torch.randn(3, 4))


def _regression_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    old, side = rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
    target = np.tanh(old[:, :6] + side.sum(1, keepdims=True)).astype(np.float32)
    return old, side, target


@pytest.mark.parametrize("freeze", [True, False])
def test_batchnorm_statistics_freeze_for_the_second_half(freeze):
    old, side, target = _regression_data()
    h = FCTTransformation(8, 3, 6, TransformationConfig(inner_dim=16))
    config = TransformationConfig(inner_dim=16, epochs=4, batch_size=64, lr=1e-2, warmup_epochs=1, freeze_bn=freeze)
    log = fit_transformation(h, [(old, side, target)], config, seed=0, validation=(old[:32], side[:32], target[:32]))
    steps = len(old) // config.batch_size
    tracked = {int(m.num_batches_tracked) for m in h.modules() if isinstance(m, torch.nn.BatchNorm1d)}
    assert tracked == {steps * (2 if freeze else 4)}  # statistics update only in the epochs before the freeze
    assert [e["bn_frozen"] for e in log["epochs"]] == ([False, False, True, True] if freeze else [False] * 4)
    assert log["epochs"][-1]["mse"] < log["epochs"][0]["mse"]  # it learns
    assert log["epochs"][-1]["val_mse"] < log["epochs"][0]["val_mse"]  # and the validation loss is logged each epoch


def test_freeze_batchnorm_keeps_statistics_but_not_weights():
    h = FCTTransformation(4, 4, 4, TransformationConfig(inner_dim=8)).train()
    freeze_batchnorm(h)
    before = {k: v.clone() for k, v in h.state_dict().items() if "running" in k}
    out = h(torch.randn(10, 4), torch.randn(10, 4))
    out.sum().backward()
    assert all(torch.equal(before[k], v) for k, v in h.state_dict().items() if "running" in k)
    assert all(p.grad is not None for p in h.parameters())


def test_gallery_upgrade_takes_stored_vectors_only():
    params = inspect.signature(upgrade_gallery).parameters
    assert list(params) == ["h", "old", "side", "batch_size"]  # no image, no image model
    h = FCTTransformation(8, 3, 6, TransformationConfig(inner_dim=16)).eval()
    old, side, _ = _regression_data(n=50)
    small_batches = upgrade_gallery(h, old, side, batch_size=7)
    with torch.no_grad():
        direct = h(torch.from_numpy(old), torch.from_numpy(side)).numpy()
    np.testing.assert_allclose(small_batches, direct, rtol=1e-5, atol=1e-6)
    images = np.zeros((50, 32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match="old embeddings must be N x 8 vectors, got shape \\(50, 32, 32, 3\\)"):
        upgrade_gallery(h, images, side)


def _nt_xent_oracle(z: torch.Tensor, tau: float) -> float:
    """SimCLR Eq. (1) written out: mean over 2N anchors of -log softmax of the positive among the other rows."""
    z = torch.nn.functional.normalize(z.double(), dim=1)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        p = (i + n2 // 2) % n2
        sims = [math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i]
        total += -math.log(math.exp(float(z[i] @ z[p]) / tau) / sum(sims))
    return total / n2


def test_nt_xent_matches_the_formula_and_pytorch_metric_learning():
    from pytorch_metric_learning.losses import NTXentLoss

    torch.manual_seed(0)
    z = torch.randn(8, 5)  # 4 images, 2 views
    out = StepOutputs(torch.zeros(8, 3, 2, 2), torch.zeros(8, dtype=torch.long), z, torch.zeros(8, 2))
    for tau in (0.1, 0.5):
        ours = float(NTXent(tau)(out))
        assert ours == pytest.approx(_nt_xent_oracle(z, tau), rel=1e-5)
        assert ours == pytest.approx(float(NTXentLoss(temperature=tau)(z, torch.arange(4).repeat(2))), rel=1e-5)
    with pytest.raises(ConfigError, match="two views"):
        NTXent()(StepOutputs(torch.zeros(3, 3, 2, 2), torch.zeros(3, dtype=torch.long), torch.randn(3, 5), torch.zeros(3, 2)))


def _reference_view(batch, generator, min_scale=0.2):
    """SimCLR's view written as the sequence of operations it describes (one op per step), as an oracle."""
    from compat.augment import MEAN, STD

    b, _, h, w = batch.shape
    uniform = lambda low, high: low + (high - low) * torch.rand(b, generator=generator)  # noqa: E731
    luma = lambda x: (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)  # noqa: E731
    area, log_ratio = uniform(min_scale, 1.0), uniform(math.log(3 / 4), math.log(4 / 3))
    sx, sy = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0), torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    cx, cy = (1 - sx) * (2 * uniform(0, 1) - 1), (1 - sy) * (2 * uniform(0, 1) - 1)
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * flip, cx, sy, cy
    grid = torch.nn.functional.affine_grid(theta, (b, 3, h, w), align_corners=False)
    x = torch.nn.functional.grid_sample(batch.float() / 255, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    jitter = (uniform(0, 1) < 0.8).view(b, 1, 1, 1)
    brightness, contrast, saturation = (uniform(0.6, 1.4).view(b, 1, 1, 1) for _ in range(3))
    y = x * brightness
    y = (y - y.mean(dim=(1, 2, 3), keepdim=True)) * contrast + y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - luma(y)) * saturation + luma(y)
    x = torch.where(jitter, y.clamp(0, 1), x)
    x = torch.where((uniform(0, 1) < 0.2).view(b, 1, 1, 1), luma(x).expand_as(x), x)
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_simclr_view_matches_the_step_by_step_oracle():
    batch = torch.randint(0, 256, (64, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    fast = simclr_view(batch, torch.Generator().manual_seed(5))
    slow = _reference_view(batch, torch.Generator().manual_seed(5))
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)


def test_simclr_views_are_random_per_image_and_repeatable():
    batch = torch.from_numpy(make_synthetic(num_classes=2, train_per_class=4, image_size=16).train.images).permute(0, 3, 1, 2)
    a = simclr_view(batch, torch.Generator().manual_seed(0))
    b = simclr_view(batch, torch.Generator().manual_seed(0))
    c = simclr_view(batch, torch.Generator().manual_seed(1))
    assert a.shape == (8, 3, 16, 16) and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_contrastive_training_uses_two_views_and_no_labels():
    data = make_synthetic(num_classes=4, train_per_class=8, image_size=16, seed=1)
    model = EmbeddingModel(ModelConfig("resnet20", 2, 8), 4)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.05, warmup_epochs=0, precision="fp32")
    seen = []

    class Spy(NTXent):
        def forward(self, out):
            seen.append(len(out.embedding))
            return super().forward(out)

    log = fit(model, data.train.images, data.train.labels, cfg, [Spy(0.2)], seed=0, views=simclr_view, num_views=2, progress=False)
    assert set(seen) == {16} and log["epochs"][0]["train_acc"] is None


def test_added_options_keep_old_keys():
    @dataclasses.dataclass(frozen=True)
    class Before:
        a: int = 1

    @dataclasses.dataclass(frozen=True)
    class After:
        a: int = 1
        b: float = dataclasses.field(default=0.5, metadata=ADDED_OPTION)

    Before.__qualname__ = After.__qualname__ = "Spec"
    assert config_key(Before()) == config_key(After())
    assert config_key(After(b=0.7)) != config_key(Before())


FCT_TINY = {
    **TINY,
    "bct.ablation": "false",
    "fct.transformation.augmented_views": "2",
    "fct.side_dim": "4",
    "fct.ablation_side_dims": "2",
    "fct.side_train.epochs": "1",
    "fct.side_train.batch_size": "16",
    "fct.transformation.inner_dim": "16",
    "fct.transformation.epochs": "2",
    "fct.transformation.batch_size": "16",
    "fct.transformation.warmup_epochs": "1",
    "fct.picture_queries": "2",
}


def test_fct_experiment_end_to_end_on_a_tiny_profile(tmp_path):
    from compat.artefacts import get_embeddings, get_transformation
    from compat.experiments import fct, get_experiment

    experiment = get_experiment("fct")
    store = Store(tmp_path / "cache", tmp_path / "results")
    profile = get_profile("smoke", FCT_TINY)
    results = experiment.run(profile, store)
    assert [r["kind"] for r in results] == ["main", "ablation"]
    cases = {r["case"] for r in results[1]["rows"]}
    assert {"FCT side-info 0 new/old", "FCT side-info 2 new/old", "FCT side-info 4 new/old", "FCT side-info 4, BatchNorm not frozen new/old"} <= cases

    # the no-side-info gallery is h(old, old): the old embedding fills the side input, as in the official code
    spec = fct.transformation_spec(profile, 0, 0)
    assert spec.side is None and spec.side_dim() == profile.model.embedding_dim
    flip = profile.protocol.test_flip  # the stored gallery vectors are what the protocol embeds
    old = get_embeddings(spec.old, store, flip=flip)
    upgraded = upgrade_gallery(get_transformation(spec, store), old, old)
    from compat.evaluate import retrieval_metrics

    labels = profile.data.load().val.labels
    row = next(r for r in results[0]["rows"] if r["case"] == fct.NO_SIDE and r["distance"] == "l2")
    assert retrieval_metrics(get_embeddings(spec.new, store, flip=flip), upgraded, labels)["top1"] == pytest.approx(row["top1"])
    assert (
        len(get_transformation(spec, store) and store.model_meta(spec.key)["log"]["epochs"][0])
        and "val_mse" in store.model_meta(spec.key)["log"]["epochs"][0]
    )

    picture = fct.examples(results)
    assert len(picture["queries"]) == 2 and set(picture["top5"]) == set(fct.PICTURE_CASES)
    assert all(q not in top for case in picture["top5"].values() for q, top in zip(picture["queries"], case))  # leave-one-out
    assert experiment.run(profile, store) == results  # reloaded, nothing retrained
    assert not experiment.ablation_table(results, "l2", store).empty


def test_upgrade_flops_against_hand_counts():
    from compat.compare import forward_flops, upgrade_flops
    from compat.config import get_profile

    linear = torch.nn.Linear(6, 4, bias=False)
    assert forward_flops(linear, torch.randn(10, 6)) == 2 * 6 * 4  # one multiply-add per weight and row
    h = FCTTransformation(8, 8, 8, TransformationConfig(inner_dim=16))
    branches = 2 * (2 * (8 * 16 + 16 * 16))  # old and side branch: 8 -> 16 -> 16
    mixer = 2 * (32 * 16 + 16 * 16 + 16 * 8)
    assert forward_flops(h, torch.randn(5, 8), torch.randn(5, 8)) == branches + mixer
    flops = upgrade_flops(get_profile("smoke"))
    assert flops["nothing"] == 0 < flops["transformation"] < flops["re-embedding"]


def test_the_comparison_reads_result_files_and_never_trains(tmp_path, monkeypatch):
    from compat import artefacts
    from compat.compare import comparison_table
    from compat.config import get_profile
    from compat.errors import ConfigError

    monkeypatch.setattr(artefacts, "fit", lambda *a, **k: pytest.fail("the comparison trained a model"))
    with pytest.raises(ConfigError, match=r"no result file bct/smoke/[0-9a-f]{16}\.json .*python -m compat run bct --profile smoke"):
        comparison_table(get_profile("smoke"), Store(tmp_path / "c", tmp_path / "r"))


@pytest.mark.parametrize("profile_name", ["smoke", "cpu"])
def test_every_compared_method_names_cases_its_chapter_measures_as_its_own_baselines(profile_name):
    """Each comparison entry's case, backfill (ceiling) and old-model floor are cases of its chapter's main plan, the
    floor an old/old and the ceiling a new/new of the same protocol (scenario or generation)."""
    from compat.compare import comparison_entries
    from compat.config import get_profile
    from compat.experiments import get_experiment

    profile = get_profile(profile_name)
    last = len(profile.bict.generations)
    for name, entry in comparison_entries():
        experiment = get_experiment(name)
        cases = {c.label for c in experiment.plan(profile, experiment.seeds(profile)[0]).cases}
        case, ceiling, floor = (c.format(last=last) for c in (entry.case, entry.ceiling, entry.floor))
        assert {case, ceiling, floor} <= cases, entry.method
        assert floor.endswith("old/old") and ceiling.endswith("new/new")
        assert floor.split(":")[0] == case.split(":")[0] or ":" not in case or name == "bict", entry.method


def test_every_compared_row_is_made_with_registered_methods_and_its_upgrade_with_a_registered_transformation():
    from compat.compare import comparison_entries
    from compat.methods import METHODS
    from compat.transformations import TRANSFORMATIONS

    entries = comparison_entries()
    assert [name for name, _ in entries][:1] == ["bct"] and {name for name, _ in entries} == {"bct", "fct", "unibct", "bict"}
    for _, entry in entries:
        assert set(entry.uses) <= set(METHODS) | set(TRANSFORMATIONS), entry.method
        assert any(u in METHODS for u in entry.uses), entry.method  # every row has image models
        assert (entry.upgrade == "transformation") == any(u in TRANSFORMATIONS for u in entry.uses), entry.method


@register_transformation("linear")
class _Linear(VectorTransformation):
    """A fixture kind: one linear map of (old, side) concatenated, to show that a second architecture needs only this."""

    def __init__(self, old_dim, side_dim, new_dim, config):
        super().__init__(old_dim, side_dim, new_dim)
        self.map = torch.nn.Linear(old_dim + side_dim, new_dim)

    def forward(self, old, side):
        self.check_inputs(old, side)
        return self.map(torch.cat([old, side], dim=1))


def test_a_registered_transformation_kind_is_built_trained_and_upgrades_like_fcts():
    assert set(TRANSFORMATIONS) >= {"fct", "linear"}
    assert isinstance(build_transformation(TransformationConfig(inner_dim=16), 8, 3, 6), FCTTransformation)
    rng = np.random.default_rng(0)
    old, side = rng.normal(size=(512, 8)).astype(np.float32), rng.normal(size=(512, 3)).astype(np.float32)
    weights = rng.normal(size=(11, 6)).astype(np.float32)
    target = np.concatenate([old, side], axis=1) @ weights  # a linear target: the linear kind can reach MSE 0
    config = TransformationConfig(kind="linear", epochs=40, batch_size=64, lr=0.05, warmup_epochs=1, freeze_bn=False)
    torch.manual_seed(0)
    h = build_transformation(config, 8, 3, 6)
    assert isinstance(h, _Linear)
    before = float(np.mean((upgrade_gallery(h, old, side) - target) ** 2))
    log = fit_transformation(h, [(old, side, target)], config, seed=0)
    after = float(np.mean((upgrade_gallery(h, old, side) - target) ** 2))
    assert after < 0.01 * before and abs(after - log["epochs"][-1]["mse"]) < 0.05 * before
    with pytest.raises(ConfigError, match="old embeddings must be N x 8"):
        upgrade_gallery(h, side, side)


def test_the_kind_is_in_a_key_only_when_it_is_not_fcts_and_an_unknown_kind_is_refused_by_name():
    assert "kind" not in canonical(TransformationConfig()) and canonical(TransformationConfig(kind="linear"))["kind"] == "linear"
    with pytest.raises(ConfigError, match="transformation kind.*'mlp'.*fct"):
        TransformationConfig(kind="mlp")
    with pytest.raises(ConfigError, match="already registered"):
        register_transformation("fct")(_Linear)
    with pytest.raises(ConfigError, match="VectorTransformation subclass"):
        register_transformation("plain module")(torch.nn.Linear)
