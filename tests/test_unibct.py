"""UniBCT's structural prototype refinement and prototype loss against independent oracles: the
fixed-point iteration, explicit loops, and hand-computed cases."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import TINY

from compat.errors import ConfigError
from compat.losses import CrossEntropy, PrototypeLoss, StepOutputs, refine_prototype, structural_affinity
from compat.methods.unibct import schedule
from compat.models import EmbeddingModel, ModelConfig
from compat.train import TrainConfig, fit


def _class(n=7, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def _affinity_by_loops(new, tau):
    """Column softmax of cosine / tau over i != j, written out element by element."""
    z = new.numpy() / np.linalg.norm(new.numpy(), axis=1, keepdims=True)
    n = len(z)
    a = np.zeros((n, n))
    for j in range(n):
        denom = sum(math.exp(z[k] @ z[j] / tau) for k in range(n) if k != j)
        for i in range(n):
            a[i, j] = 0.0 if i == j else math.exp(z[i] @ z[j] / tau) / denom
    return a


def test_affinity_columns_sum_to_one_with_a_zero_diagonal():
    _, new = _class()
    a = structural_affinity(new, tau=0.5)
    np.testing.assert_allclose(a.numpy(), _affinity_by_loops(new, 0.5), rtol=1e-5, atol=1e-7)
    assert torch.allclose(a.sum(0), torch.ones(len(a))) and torch.all(a.diagonal() == 0)


def test_closed_form_equals_the_fixed_point_of_the_diffusion():
    old, new = _class()
    tau, lam = 0.5, 0.9
    a = torch.from_numpy(_affinity_by_loops(new, tau)).float()
    f = old.clone()
    for normalize, graph in (("column", a), ("row", a.T)):
        f = old.clone()
        for _ in range(2000):  # F <- lambda A F + (1 - lambda) O, a contraction for lambda < 1
            f = lam * graph @ f + (1 - lam) * old
        assert torch.allclose(refine_prototype(old, new, tau, lam, normalize), f.mean(0), atol=1e-4)


def test_the_column_softmax_leaves_the_class_mean_unchanged_and_the_row_softmax_does_not():
    old, new = _class(n=9, d=4, seed=3)
    for tau, lam in ((0.05, 0.9), (0.5, 0.5), (2.0, 0.99)):
        assert torch.allclose(refine_prototype(old, new, tau, lam, "column"), old.mean(0), atol=1e-4)  # 1^T A = 1^T
    assert not torch.allclose(refine_prototype(old, new, 0.5, 0.9, "row"), old.mean(0), atol=1e-3)


def test_no_diffusion_gives_the_plain_class_mean_and_bad_input_is_refused():
    old, new = _class()
    assert torch.allclose(refine_prototype(old, new, 0.05, 0.0), old.mean(0), atol=1e-6)
    assert torch.equal(refine_prototype(old[:1], new[:1]), old[0])  # a single image has no neighbours
    with pytest.raises(ConfigError, match="diffusion=1.0 is out of range"):
        refine_prototype(old, new, 0.05, 1.0)
    with pytest.raises(ConfigError, match="must align row by row"):
        refine_prototype(old, new[:3])


def test_prototype_loss_is_ce_of_cosine_logits_and_off_before_its_start():
    old = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    term = PrototypeLoss(old, labels, weight=2.0, start=1)
    assert torch.allclose(term.prototypes, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # means of unit vectors
    z = torch.tensor([[1.0, 1.0]])
    out = StepOutputs(torch.zeros(1, 3, 4, 4), torch.tensor([1]), z, z)
    term.start_epoch(0, 3, lambda: None)
    assert float(term(out)) == 0.0  # off for the first epoch
    term.start_epoch(1, 3, lambda: None)
    c = 1 / math.sqrt(2)  # cosine of (1, 1) with either prototype: equal logits
    assert float(term(out)) == pytest.approx(2.0 * -math.log(math.exp(c) / (2 * math.exp(c))))


def test_refresh_replaces_the_prototypes_with_refined_ones_at_its_epochs():
    old, new = _class(n=6, d=4)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    term = PrototypeLoss(old, labels, start=1, refine=True, refresh=(1,), tau=0.5, diffusion=0.9, affinity="row")
    plain = term.prototypes.clone()
    term.start_epoch(0, 3, lambda: new.numpy())
    assert torch.equal(term.prototypes, plain) and term.refreshed == []
    term.start_epoch(1, 3, lambda: new.numpy())
    unit = torch.nn.functional.normalize(old, dim=1)
    expected = torch.stack([refine_prototype(unit[labels == c], new[labels == c], 0.5, 0.9, "row") for c in (0, 1)])
    assert not torch.allclose(expected, plain, atol=1e-4)
    assert term.refreshed == [1] and torch.allclose(term.prototypes, expected)


def test_schedule_scales_the_reimplementations_epochs():
    assert schedule(35) == (10, (10, 20))
    assert schedule(6) == (2, (2, 3))


def test_training_refreshes_and_a_resumed_run_keeps_the_refined_prototypes(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(48) % 3
    images = (rng.random((48, 8, 8, 3)) * 60 + labels[:, None, None, None] * 60).astype(np.uint8)
    old = torch.from_numpy(rng.normal(size=(48, 8)).astype(np.float32))
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, warmup_epochs=0, precision="fp32")

    def run(workdir, on_epoch=None):
        torch.manual_seed(0)
        model = EmbeddingModel(ModelConfig("resnet20", width=2, embedding_dim=8), 3)
        term = PrototypeLoss(old, torch.from_numpy(labels), start=1, refine=True, refresh=(1, 2))
        fit(model, images, labels, config, [CrossEntropy(), term], seed=0, workdir=workdir, on_epoch=on_epoch)
        return model, term

    whole, term = run(tmp_path / "a")
    assert term.refreshed == [1, 2]

    class Stop(Exception):
        pass

    def stop(model, epoch, _raw):
        if epoch == 2:
            raise Stop
        return {}

    with pytest.raises(Stop):
        run(tmp_path / "b", stop)
    resumed, resumed_term = run(tmp_path / "b")
    assert torch.allclose(resumed_term.prototypes, term.prototypes)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


def test_unibct_experiment_end_to_end_on_a_tiny_profile(tmp_path):
    from compat.config import get_profile
    from compat.experiments import get_experiment
    from compat.experiments.unibct import gain_matrix, verification_table
    from compat.store import Store

    tiny = {**TINY, "data.synthetic_classes": "10", "old_train.epochs": "2", "new_train.epochs": "4"}
    tiny.update({"unibct.ablation_taus": "0.1", "unibct.ablation_diffusions": "0.5"})
    store = Store(tmp_path / "c", tmp_path / "r")
    profile = get_profile("smoke", tiny)
    unibct = get_experiment("unibct")
    results = unibct.run(profile, store)
    assert [r["kind"] for r in results] == ["main", "ablation"]
    cases = {r["case"] for r in results[0]["rows"]}
    assert {"open-class: UniBCT new/old", "open-data: BCT new/new", "extended-class: old/old"} <= cases
    # the two class scenarios share one old model, the data scenarios another
    models = results[0]["models"]
    assert models["open-class/old"]["key"] == models["extended-class/old"]["key"] != models["open-data/old"]["key"]
    table = unibct.summary_table(results, "l2", store)
    g = gain_matrix(table)
    assert set(g.index) == {"extended-class", "open-class", "extended-data", "open-data"} and "UniBCT" in g.columns
    # the open-class gain uses the open-class references
    row = next(r for r in results[0]["rows"] if r["case"] == "open-class: BCT new/old" and r["distance"] == "l2")
    ref = {r["case"]: r for r in results[0]["rows"] if r["distance"] == "l2"}
    denominator = ref["open-class: independent new/new"]["top1"] - ref["open-class: old/old"]["top1"]
    if denominator:
        assert row["gain_top1"] == pytest.approx((row["top1"] - ref["open-class: old/old"]["top1"]) / denominator)
    tar = verification_table(results, store)
    assert ((tar["TAR (%)"] >= 0) & (tar["TAR (%)"] <= 100)).all() and len(tar) == len(results[0]["rows"]) // 2
    assert list(tar.columns) == ["TAR (%)", "low", "high"]  # the per-query shares give each TAR its interval
    assert ((tar["low"] <= tar["TAR (%)"] + 1e-9) & (tar["TAR (%)"] <= tar["high"] + 1e-9)).all()
    per_query = store.read_per_query("unibct", profile.name, results[0]["key"])  # each query's share of accepted mates
    for case, value in results[0]["verification"]["tar"].items():  # equal class sizes: the shares average to the TAR
        assert float(np.mean(per_query[f"tar|{case}"])) == pytest.approx(value, abs=1e-4)
    claims = unibct.check_claims(results, "l2", store)["claim"].tolist()
    assert len(claims) == 17 and claims.count("open-class: refinement helps with the term on from epoch 0 (schedule control, new/old)") == 1
    assert "with the term on from epoch 0: " in unibct.verdict(results, "l2", store)  # four claims a scenario, the control's in open-class


def test_the_main_tables_methods_are_chosen_by_name_and_unknown_ones_refused():
    from compat.config import get_profile
    from compat.experiments.unibct import model_specs

    profile = get_profile("smoke", {"unibct.methods": "BCT,UniBCT", "unibct.scenarios": "open-data"})
    assert sorted(model_specs(profile, 0)) == ["open-data/BCT", "open-data/UniBCT", "open-data/independent", "open-data/old"]
    assert "open-class/UniBCT (no refinement)" in model_specs(profile, 0, ablation=True)  # the ablation keeps its baselines
    with pytest.raises(ConfigError, match="'L3'.*allowed"):
        get_profile("smoke", {"unibct.methods": "BCT,L3"})
    assert "extended-class/L2" in model_specs(get_profile("cpu"), 0)  # the cpu profile has the L2 rows the issue asks for


def test_ablation_curve_puts_the_main_row_at_the_default_and_sorts_by_value():
    import pandas as pd

    from compat.config import get_profile
    from compat.experiments.unibct import ablation_curve

    profile = get_profile("smoke", {"unibct.ablation_taus": "0.2,0.01", "unibct.tau": 0.05, "unibct.ablation_diffusions": "0.5"})
    s = profile.unibct.ablation_scenario
    cases = [
        f"{s}: UniBCT new/old",
        f"{s}: UniBCT tau=0.2 new/old",
        f"{s}: UniBCT tau=0.01 new/old",
        f"{s}: UniBCT lambda=0.5 new/old",
        f"{s}: old/old",
    ]
    table = pd.DataFrame({"top1": [3.0, 2.0, 1.0, 4.0, 0.5]}, index=cases)
    tau = ablation_curve(profile, table, "tau")
    assert list(tau.index) == [0.01, 0.05, 0.2] and list(tau["top1"]) == [1.0, 3.0, 2.0]
    lam = ablation_curve(profile, table, "lambda")
    assert list(lam.index) == [0.5, 0.9] and list(lam["top1"]) == [4.0, 3.0]
    with pytest.raises(ConfigError, match="'beta'.*allowed"):
        ablation_curve(profile, table, "beta")


def test_prototype_losses_average_the_seeds_first_and_last_epoch_on_next_to_ln_c():
    from compat.experiments.unibct import new_class_count, prototype_losses

    def epochs(*losses):
        return {"epochs": [{"epoch": i + 1, "loss_ce": 1.0, "loss_prototype": v} for i, v in enumerate(losses)]}

    results = [
        {
            "kind": "main",
            "models": {
                "open-class/UniBCT": epochs(0.0, 4.0, 3.0, 2.0),
                "open-class/BCT": {"epochs": [{"loss_influence": 1.0}]},
                "extended-data/UniBCT": epochs(0.0, 0.0, 5.0, 4.5),
            },
        },
        {"kind": "main", "models": {"open-class/UniBCT": epochs(0.0, 6.0, 5.0, 4.0)}},
        {"kind": "ablation", "models": {"open-class/UniBCT tau=0.2": epochs(0.0, 1.0, 1.0, 1.0)}},
    ]
    table = prototype_losses(results, num_classes=200, old_fraction=0.3)
    assert list(table.index) == [("open-class", "UniBCT"), ("extended-data", "UniBCT")]  # BCT and the ablation left out
    open_class = table.loc[("open-class", "UniBCT")]
    assert open_class["classes C"] == 140 and open_class["ln C (uniform)"] == pytest.approx(math.log(140))
    assert (open_class["first epoch on"], open_class["last epoch"], open_class["seeds"]) == (5.0, 3.0, 2)
    assert table.loc[("extended-data", "UniBCT"), "classes C"] == 200
    assert [new_class_count(s, 10, 0.3) for s in ("extended-class", "open-class", "extended-data", "open-data")] == [10, 7, 10, 10]


def test_verification_table_averages_the_main_seeds_and_gives_their_spread():
    from compat.experiments.unibct import verification_table

    results = [
        {"kind": "main", "verification": {"tar": {"a": 1.0, "b": 10.0}}},
        {"kind": "main", "verification": {"tar": {"a": 3.0, "b": 10.0}}},
        {"kind": "ablation", "verification": {"tar": {"a": 50.0, "b": 50.0}}},
    ]
    table = verification_table(results)
    assert table.loc["a", "TAR (%)"] == 2.0 and table.loc["a", "sd over seeds"] == pytest.approx(math.sqrt(2))
    assert table.loc["b", "sd over seeds"] == 0.0


class _PerQueryStore:
    """A store that holds only per-query files: result key -> arrays."""

    def __init__(self, files):
        self.files = files

    def read_per_query(self, experiment, profile, key):
        assert experiment == "unibct"
        return self.files[key]


def test_verification_table_gives_each_tar_its_interval_from_the_per_query_shares():
    from compat.experiments.unibct import verification_table

    rng = np.random.default_rng(0)
    shares = {seed: {"a": rng.choice([0.0, 50.0, 100.0], 400), "b": np.full(400, 20.0)} for seed in (0, 1)}
    results = [
        {"kind": "main", "profile": "cpu", "key": f"k{seed}", "verification": {"tar": {c: float(v.mean()) for c, v in shares[seed].items()}}}
        for seed in (0, 1)
    ]
    store = _PerQueryStore({f"k{seed}": {f"tar|{c}": v for c, v in shares[seed].items()} for seed in (0, 1)})
    table = verification_table(results, store)
    pooled = np.concatenate([shares[0]["a"], shares[1]["a"]])
    assert table.loc["a", "TAR (%)"] == pytest.approx(pooled.mean())
    assert table.loc["a", "low"] < pooled.mean() < table.loc["a", "high"]
    assert table.loc["a", "high"] - table.loc["a", "low"] < 4 * 1.96 * pooled.std() / math.sqrt(len(pooled))  # about 2 x 1.96 standard errors
    assert table.loc["b", "low"] == pytest.approx(20.0) and table.loc["b", "high"] == pytest.approx(20.0)  # every query alike
    store.files["k1"] = {"tar|a": shares[1]["a"]}  # a file written before the shares of case b: the seeds' spread instead
    assert list(verification_table(results, store).columns) == ["TAR (%)", "sd over seeds"]


def _mixbct_bct_fc_loss(embedding: np.ndarray, prototypes: np.ndarray, labels: np.ndarray) -> float:
    """MixBCT's ``BCT_FC`` then ``F.cross_entropy``, written out in float64: the fixed weights are the prototypes'
    transpose, only the embedding is normalized, the loss is the mean negative log-softmax of the label's logit."""
    losses = []
    for x, y in zip(embedding.astype(np.float64), labels):
        x = x / math.sqrt(sum(v * v for v in x))
        logits = [sum(x[k] * p[k] for k in range(len(x))) for p in prototypes.astype(np.float64)]
        top = max(logits)
        losses.append(top + math.log(sum(math.exp(v - top) for v in logits)) - logits[y])
    return sum(losses) / len(losses)


def _class_means(old: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.stack([old[labels == c].astype(np.float64).mean(0) for c in range(labels.max() + 1)])


def test_raw_prototypes_are_the_plain_mean_of_the_raw_old_embeddings():
    rng = np.random.default_rng(1)
    old = (rng.normal(size=(30, 6)) * 15).astype(np.float32)  # long, as MixBCT's BatchNorm1d features
    labels = rng.permutation(np.arange(30) % 4)
    term = PrototypeLoss(torch.from_numpy(old), torch.from_numpy(labels), prototypes="raw")
    np.testing.assert_allclose(term.prototypes.numpy(), _class_means(old, labels), rtol=1e-5, atol=1e-5)
    unit = PrototypeLoss(torch.from_numpy(old), torch.from_numpy(labels))  # the default: means of unit vectors
    np.testing.assert_allclose(unit.prototypes.numpy(), _class_means(old / np.linalg.norm(old, axis=1, keepdims=True), labels), atol=1e-6)


@pytest.mark.parametrize(("form", "scale"), [("raw", 1.0), ("unit", 1.0), ("unit", 16.0), ("raw", 4.0)])
def test_prototype_loss_matches_mixbcts_bct_fc_with_cross_entropy(form, scale):
    rng = np.random.default_rng(2)
    old = (rng.normal(size=(40, 8)) * 12).astype(np.float32)
    labels = np.arange(40) % 5
    z = rng.normal(size=(16, 8)).astype(np.float32) * 3
    y = rng.integers(0, 5, size=16)
    term = PrototypeLoss(torch.from_numpy(old), torch.from_numpy(labels), weight=0.5, prototypes=form, scale=scale)
    out = StepOutputs(None, torch.from_numpy(y), torch.from_numpy(z), torch.zeros(16, 5))
    rows = old if form == "raw" else old / np.linalg.norm(old, axis=1, keepdims=True)
    expected = _mixbct_bct_fc_loss(z, scale * _class_means(rows, labels), y)
    assert float(term(out)) == pytest.approx(0.5 * expected, rel=1e-5)


def test_the_prototype_loss_reports_its_share_of_ln_c_each_epoch_also_while_it_is_off():
    rng = np.random.default_rng(3)
    old = torch.from_numpy(rng.normal(size=(20, 4)).astype(np.float32))
    labels = torch.arange(20) % 4
    term = PrototypeLoss(old, labels, start=1, scale=8.0)
    batches = [torch.from_numpy(rng.normal(size=(5, 4)).astype(np.float32)) for _ in range(2)]
    term.start_epoch(0, 2, lambda: None)
    assert term.epoch_figures() == {}  # nothing seen yet
    for z in batches:
        assert float(term(StepOutputs(None, labels[:5], z, z))) == 0.0  # off, but measured
    means = _class_means(torch.nn.functional.normalize(old, dim=1).numpy(), labels.numpy())
    expected = np.mean([_mixbct_bct_fc_loss(z.numpy(), 8.0 * means, labels[:5].numpy()) for z in batches]) / math.log(4)
    assert term.epoch_figures()["prototype_share_of_ln_c"] == pytest.approx(expected, rel=1e-5)
    term.start_epoch(1, 2, lambda: None)  # a new epoch starts a new mean
    assert term.epoch_figures() == {}


def test_training_logs_the_prototype_share_every_epoch(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 4
    images = (rng.random((32, 8, 8, 3)) * 60 + labels[:, None, None, None] * 40).astype(np.uint8)
    old = torch.from_numpy(rng.normal(size=(32, 8)).astype(np.float32))
    torch.manual_seed(0)
    model = EmbeddingModel(ModelConfig("resnet20", width=2, embedding_dim=8), 4)
    term = PrototypeLoss(old, torch.from_numpy(labels), start=1, prototypes="raw")
    log = fit(model, images, labels, TrainConfig(epochs=2, batch_size=16, lr=0.05, warmup_epochs=0, precision="fp32"), [CrossEntropy(), term], seed=0)
    shares = [e["prototype_share_of_ln_c"] for e in log["epochs"]]
    assert len(shares) == 2 and all(0 < s < 5 for s in shares)
    assert log["epochs"][0]["loss_prototype"] == 0.0  # off in epoch 1, yet its share is measured


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("prototypes", "mean", "prototypes 'mean'; allowed: 'unit', 'raw'"),
        ("scale", 0.0, "scale=0.0 is out of range"),
    ],
)
def test_the_prototype_options_refuse_bad_values_by_name(option, value, message):
    from compat.experiments.unibct import UniBCTConfig
    from compat.methods import method_options

    with pytest.raises(ConfigError, match=message):
        method_options("unibct", **{option: value})
    with pytest.raises(ConfigError, match=message):
        UniBCTConfig(**{option: value})


def test_the_chapters_prototype_form_and_scale_reach_both_unibct_variants():
    from compat.config import get_profile
    from compat.experiments.unibct import model_specs

    profile = get_profile("smoke", {"unibct.prototypes": "raw", "unibct.scale": 16})
    specs = model_specs(profile, seed=0)
    for name in ("open-class/UniBCT", "open-class/UniBCT (no refinement)"):
        assert (specs[name].method.prototypes, specs[name].method.scale) == ("raw", 16.0)
    default = model_specs(get_profile("smoke"), seed=0)["open-class/UniBCT"]
    assert (
        specs["open-class/UniBCT"].key != default.key
        and specs["open-class/BCT"].key == model_specs(get_profile("smoke"), seed=0)["open-class/BCT"].key
    )


def test_the_schedule_control_turns_the_prototype_term_on_from_epoch_0_and_changes_nothing_else():
    from compat.config import get_profile
    from compat.experiments.unibct import model_specs
    from compat.methods import method_options
    from compat.methods.registry import TrainingContext
    from compat.methods.unibct import terms

    specs = model_specs(get_profile("smoke"), seed=0)
    for method in ("UniBCT (no refinement)", "UniBCT"):
        control, reference = specs[f"open-class/{method} from epoch 0"], specs[f"open-class/{method}"]
        assert control.method.from_start and not reference.method.from_start
        assert dataclasses.replace(control.method, from_start=False) == reference.method
        assert dataclasses.replace(control, method=reference.method) == reference  # same data, recipe, parent, seed
        starts = []
        for spec in (reference, control):
            labels = np.arange(12) % 3
            ctx = TrainingContext(
                spec, classes=np.arange(3), labels=labels, parent_embeddings=lambda: np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
            )
            starts.append(terms(ctx)[1].start)
        assert starts == [schedule(spec.train.epochs)[0], 0] and starts[0] > 0
    assert not any("from epoch 0" in name for name in model_specs(get_profile("cpu"), seed=0))  # off until the retrain
    assert not any("from epoch 0" in name for name in model_specs(get_profile("smoke"), seed=0, ablation=True))
    with pytest.raises(ConfigError, match="method 'bct' has no option 'from_start'; its options: weight, normalize, label_smoothing"):
        method_options("bct", from_start=True)
    with pytest.raises(ConfigError, match="unibct.schedule_control item 'closed'; allowed"):
        get_profile("smoke", {"unibct.schedule_control": "closed"})


def test_the_verdict_reads_the_schedule_control_where_it_ran():
    from compat.experiments import get_experiment

    uni = get_experiment("unibct")
    texts = [c.text for c in uni.claims()]
    assert "open-class: refinement helps with the term on from epoch 0 (schedule control, new/old)" in texts
    claim = next(c for c in uni.claims() if c.text.startswith("open-class: refinement helps with the term on"))
    assert (claim.better, claim.worse) == ("open-class: UniBCT from epoch 0 new/old", "open-class: UniBCT (no refinement) from epoch 0 new/old")


def test_a_unibct_model_branches_from_its_plain_twin_and_trains_bitwise_the_same(tmp_path):
    """The epochs before the prototype term switches on are plain training: a variant started from the
    independent model's checkpoint after them ends with the very weights of a variant trained from scratch."""
    from compat.artefacts import branch_point, get_model, kept_epochs
    from compat.config import get_profile
    from compat.experiments.unibct import model_specs
    from compat.store import Store

    tiny = {**TINY, "new_train.epochs": "3"}
    specs = model_specs(get_profile("smoke", tiny), seed=0)
    variant, twin = specs["open-class/UniBCT"], specs["open-class/independent"]
    assert schedule(3)[0] == 1 and kept_epochs(twin) == {1} and kept_epochs(variant) == set()
    scratch_store, branch_store = Store(tmp_path / "a", tmp_path / "ra"), Store(tmp_path / "b", tmp_path / "rb")
    scratch = get_model(variant, scratch_store)
    assert scratch_store.model_meta(variant.key)["log"]["branched_at_epoch"] is None  # no twin in this store
    plain = get_model(twin, branch_store)
    assert branch_point(variant, branch_store)[0].key == twin.key
    assert branch_point(specs["open-class/UniBCT from epoch 0"], branch_store) is None  # on from the first step: no branch
    branched = get_model(variant, branch_store)
    log = branch_store.model_meta(variant.key)["log"]
    assert (log["branched_at_epoch"], log["branched_from"]) == (1, twin.key) and len(log["epochs"]) == 3
    assert log["train_seconds"] == pytest.approx(sum(e["seconds"] for e in log["epochs"][1:]))  # its own epochs only
    assert all(torch.equal(a, b) for a, b in zip(scratch.state_dict().values(), branched.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), branched.state_dict().values()))  # the term acted


def test_the_pivoted_table_puts_methods_in_rows_and_scenarios_in_columns():
    import pandas as pd

    from compat.experiments.unibct import scenario_pivot

    def row(v, g=None):
        out = {"top1": v, "top1 low": v - 1, "top1 high": v + 1}
        return out | ({"G top1": g, "G top1 low": g - 0.1, "G top1 high": g + 0.1} if g is not None else {"G top1": float("nan")})

    table = pd.DataFrame.from_dict(
        {
            "open-class: old/old": row(10.0),
            "open-class: independent new/new": row(20.0),
            "open-class: BCT new/old": row(12.0, 0.2),
            "open-class: BCT new/new": row(19.0),
            "open-data: old/old": row(11.0),
            "open-data: BCT new/old": row(9.0, -0.3),
        },
        orient="index",
    )
    pivot = scenario_pivot(table)
    assert list(pivot.columns) == ["open-class", "open-data"]  # the scenarios in their book order
    assert list(pivot.index) == ["old/old", "independent new/new", "BCT (new/old)"]  # self-tests of the methods left out
    assert pivot.loc["BCT (new/old)", "open-class"] == "12.0 [11.0, 13.0]; G 0.20 [0.10, 0.30]"
    assert pivot.loc["independent new/new", "open-data"] == ""
