"""BiCT: sequential upgrades end to end on a tiny profile, and the guarantee that the gallery upgrade
never reads a gallery image (the privacy constraint), shown to be able to fail."""

import dataclasses

import numpy as np
import pytest

from compat.config import DataConfig, get_profile
from compat.data.imageset import ImageSet
from compat.store import Store

TINY = {
    "data.synthetic_classes": "8",
    "data.synthetic_train_per_class": "12",
    "data.synthetic_val_per_class": "4",
    "model.width": "2",
    "model.embedding_dim": "8",
    "old_train.epochs": "2",
    "new_train.epochs": "2",
    "old_train.batch_size": "16",
    "new_train.batch_size": "16",
    "protocol.seeds": "0",
    "bict.generations": "0.25,0.5,1",
    "bict.sweep": "0,1",
    "bict.transformation.epochs": "2",
    "bict.transformation.batch_size": "16",
    "bict.transformations": "chain,stepwise",
    "bict.anchored": "true",  # both h variants, the anchored BCT control
}


class Forbidden(np.ndarray):
    """Gallery images that raise when read."""

    def __getitem__(self, key):
        raise AssertionError("a gallery image was read")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from compat.experiments import get_experiment

    tmp = tmp_path_factory.mktemp("bict")
    store = Store(tmp / "c", tmp / "r")
    profile = get_profile("smoke", TINY)
    bict = get_experiment("bict")
    with pytest.MonkeyPatch.context() as env:  # module-scoped: before the per-test isolation of conftest
        env.setenv("COMPAT_TRAIN", "allow")
        return bict, profile, store, bict.run(profile, store)


def test_sequential_upgrades_end_to_end(trained):
    from compat.experiments.bict_reading import compatibility_matrix, strategy_intervals, sweep_intervals, sweep_table

    bict, profile, store, results = trained
    assert [r["kind"] for r in results] == ["main", "ablation"]
    cases = {r["case"] for r in results[0]["rows"]}
    for g in (2, 3):
        assert {
            f"gen {g}: BCT only backward",
            f"gen {g}: BiCT forward",
            f"gen {g}: FCT alone forward",
            f"gen {g}: backfill new/new",
            f"gen {g}: BiCT forward (chain-trained h)",
            f"gen {g}: FCT alone forward (chain-trained h)",
        } <= cases
    assert {"gen 3: BCT only backward, BCT to gen 1", "gen 3: BCT new/new, BCT to gen 1"} <= cases
    assert "gen 2: BCT only backward, BCT to gen 1" not in cases  # generation 2's BCT model is already against generation 1
    table = bict.summary_table(results, "l2", store)
    strategies = strategy_intervals(table)
    drawn = {f"gen {g}: {what}" for g, what in zip(strategies["generation"], strategies["strategy"])}
    assert drawn == {c for c in table.index if c.startswith("gen ") and "chain" not in c and table.loc[c].notna()["top1"]}
    assert {2, 3} <= set(strategies["generation"])  # a diverged case has no point to draw
    assert ((strategies["low"] <= strategies["value"]) & (strategies["value"] <= strategies["high"])).all()
    matrix = compatibility_matrix(table, "bct")
    assert list(matrix.index) == ["gen 2", "gen 3"] and list(matrix.columns) == ["gen 1", "gen 2"]
    sweep = sweep_table(results)
    assert set(sweep["BCT weight"]) == {0.0, 1.0} and set(sweep["retrieval"]) >= {"BCT only backward", "BiCT forward"}
    # the figure's intervals (from the per-query files) centre on the stored numbers the sweep table reads
    drawn = sweep_intervals(bict.ablation_table(results, "l2", store)).set_index(["BCT weight", "retrieval"])["value"]
    stored = sweep.set_index(["BCT weight", "retrieval"])["top1"]
    assert drawn.sort_index().to_numpy() == pytest.approx(stored.loc[drawn.sort_index().index].to_numpy())
    checked = bict.check_claims(results, "l2", store)
    assert [c.split(":")[0] for c in checked["claim"]] == ["gen 2", "gen 3", "gen 3", "gen 3", "gen 3", "gen 3"]
    assert {c.better for c in bict.claims(results)} >= {"gen 3: BiCT forward (chain-trained h)"}  # the first variant is the main one
    verdict = bict.verdict(results, "l2", store)
    assert "(2) forward upgrade without images: " in verdict and "(4) the BCT weight matters: " in verdict
    assert "best λ=" in verdict  # the sweep was read
    # generation g's update gain is measured against generation g's backfill
    row = next(r for r in results[0]["rows"] if r["case"] == "gen 2: BiCT forward" and r["distance"] == "l2")
    ref = {r["case"]: r["top1"] for r in results[0]["rows"] if r["distance"] == "l2"}
    if ref["gen 2: backfill new/new"] != ref["gen 1: old/old"]:
        assert row["gain_top1"] == pytest.approx((row["top1"] - ref["gen 1: old/old"]) / (ref["gen 2: backfill new/new"] - ref["gen 1: old/old"]))


def _forbid_gallery_images(monkeypatch):
    real_load = DataConfig.load

    def load(self):
        data = real_load(self)
        forbidden = np.zeros_like(data.val.images).view(Forbidden)
        return dataclasses.replace(data, val=ImageSet(forbidden, data.val.labels))

    monkeypatch.setattr(DataConfig, "load", load)


@pytest.mark.reliability(
    fault="the BiCT gallery upgrade reading a gallery image", behaviour="impossible: the upgrade takes stored vectors only; a read fails the test"
)
def test_the_gallery_upgrade_reads_no_gallery_image(trained, monkeypatch):
    from compat.experiments.bict import _main_plan

    bict, profile, store, _ = trained
    plan = _main_plan(profile, 0)
    _forbid_gallery_images(monkeypatch)
    for name, make in plan.galleries.items():  # generation 1's stored vectors in, upgraded vectors out
        upgraded = make(store, profile.protocol.test_flip)
        assert upgraded.shape == (len(profile.data.load().val.labels), profile.model.embedding_dim), name
    # the guard can fail: without generation 1's stored vectors, the gallery would have to be embedded from images
    for path in (store.cache / "embeddings").glob("*.npy"):
        path.unlink()
    with pytest.raises(AssertionError, match="a gallery image was read"):
        next(iter(plan.galleries.values()))(store, profile.protocol.test_flip)


def test_the_upgrade_cost_times_the_last_generations_h_against_re_embedding(trained):
    from compat.experiments.bict import upgrade_cost

    bict, profile, store, results = trained
    profile = get_profile("smoke", {**TINY, "bict.cost_sizes": "20,50"})
    cost = upgrade_cost(profile, store)
    assert cost["transformation"]["key"] == results[0]["models"]["bct h 3 (chain-trained h)"]["key"]  # the main variant's h
    assert sorted((r["method"], r["n"]) for r in cost["rows"]) == [("re-embed", 20), ("re-embed", 50), ("upgrade", 20), ("upgrade", 50)]
    assert all(r["seconds"] > 0 and r["rows_per_s"] == pytest.approx(r["n"] / r["seconds"]) for r in cost["rows"])
    assert upgrade_cost(profile, store) == cost  # a result file: measured once


def test_the_chain_trained_h_learns_from_what_the_gallery_holds(trained, monkeypatch):
    """h_3 (chain) trains on h_2(phi_1(x)) of generation 3's training images, h_3 (stepwise) on phi_2(x); h_2 is one."""
    from compat import artefacts
    from compat.experiments.bict import _main_plan

    bict, profile, store, results = trained
    plan = _main_plan(profile, 0)
    chain, stepwise = plan.artefacts["bct h 3 (chain-trained h)"], plan.artefacts["bct h 3"]
    assert chain.old == plan.models["bct 1"] and chain.through == (plan.artefacts["bct h 2"],)
    assert plan.artefacts["bct h 2 (chain-trained h)"].key == plan.artefacts["bct h 2"].key
    assert stepwise.old == plan.models["bct 2"] and stepwise.through == ()
    assert results[0]["models"]["bct h 3 (chain-trained h)"]["key"] == chain.key != stepwise.key
    seen = []
    monkeypatch.setattr(artefacts, "fit_transformation", lambda h, views, *a, **k: seen.append(views) or {"epochs": []})
    monkeypatch.setattr(store, "has_model", lambda key: False)  # train again, into the recorder
    monkeypatch.setattr(store, "save_model", lambda *a, **k: None)
    artefacts.get_transformation(chain, store)
    old_inputs = seen[-1][0][0]
    h2 = artefacts.get_transformation(plan.artefacts["bct h 2"], store)
    phi1 = artefacts.get_embeddings(chain.old, store, rows=chain.new.subset, view=(1, chain.new.train.crop_padding))
    np.testing.assert_allclose(old_inputs, artefacts.upgrade_chain([h2], phi1), rtol=1e-6)
    artefacts.get_transformation(stepwise, store)
    phi2 = artefacts.get_embeddings(stepwise.old, store, rows=stepwise.new.subset, view=(1, stepwise.new.train.crop_padding))
    np.testing.assert_allclose(seen[-1][0][0], phi2, rtol=1e-6)


def test_the_anchored_control_is_trained_against_the_gallerys_model(trained):
    from compat.experiments.bict import _main_plan

    _, profile, _, _ = trained
    plan = _main_plan(profile, 0)
    assert plan.models["bct 3, BCT to gen 1"].parent == plan.models["bct 1"]
    assert plan.models["bct 3"].parent == plan.models["bct 2"]


def test_bad_transformation_variants_are_refused_by_name():
    from compat.errors import ConfigError

    with pytest.raises(ConfigError, match="bict.transformations item 'sideways'; allowed: 'stepwise', 'chain'"):
        get_profile("smoke", {"bict.transformations": ["sideways"]})
    with pytest.raises(ConfigError, match="distinct and non-empty"):
        get_profile("smoke", {"bict.transformations": ["chain", "chain"]})


def test_each_upgraded_gallery_records_its_error_against_the_embeddings_it_stands_in_for(trained):
    from compat.artefacts import get_embeddings
    from compat.experiments.base import upgrade_errors
    from compat.experiments.bict import _main_plan

    bict, profile, store, results = trained
    main = results[0]
    plan = _main_plan(profile, 0)
    flip = profile.protocol.test_flip
    gallery = plan.galleries["bict gallery 3 (chain-trained h)"](store, flip)
    truth = get_embeddings(plan.models["bct 3"], store, flip=flip)
    by_hand = sum(float(d) ** 2 for d in (gallery - truth).ravel()) / gallery.size  # mean over items and dimensions
    assert main["upgrade_mse"]["bict gallery 3 (chain-trained h)"] == pytest.approx(by_hand, rel=1e-5)
    assert set(main["upgrade_mse"]) == set(plan.galleries)
    table = upgrade_errors([main], store)
    row = table.loc["fct gallery 3"]
    assert row["MSE"] == pytest.approx(main["upgrade_mse"]["fct gallery 3"]) and row["MSE low"] <= row["MSE"] <= row["MSE high"]
    assert upgrade_errors([{**main, "upgrade_mse": {}}], store).empty  # files from before the record: nothing shown


@pytest.mark.parametrize(
    "upgraded, helps, costs, label, words",
    [
        ([True, True], True, False, "reproduced", "the BCT half helps"),
        ([True, True], False, False, "partly reproduced", "does not help the forward upgrade measurably"),
        ([True, True], False, True, "partly reproduced", "the BCT half costs the forward upgrade"),
        ([True, False], True, False, "not reproduced", "does not beat the stored one at generation 3"),
        ([False, False], False, True, "not reproduced", "at generation 2, 3; the BCT half costs"),
    ],
)
def test_the_thesis_rule_on_constructed_claims(upgraded, helps, costs, label, words):
    from compat.experiments.bict_reading import thesis

    got, reading = thesis(upgraded, helps, costs)
    assert got == label and words in reading
    with pytest.raises(ValueError, match="both above and below"):
        thesis(upgraded, True, True)


def test_the_verdict_names_the_thesis_from_the_claims_it_reads(monkeypatch):
    import pandas as pd

    from compat.experiments import get_experiment

    bict = get_experiment("bict")
    results = [
        {
            "kind": "main",
            "seed": s,
            "rows": [{"case": "gen 3: BiCT forward", "distance": "l2"}],
            "config": {"sections": {"bict": {"transformations": ["stepwise"]}}},
        }
        for s in (0, 1)
    ]
    holds = {"upgraded gallery beats": True, "helps the forward": False, "costs the forward": True, "backward compatible": True, "ceiling": True}
    claims = pd.DataFrame(
        [
            {
                "claim": c.text,
                "holds": next(v for k, v in holds.items() if k in c.text),
                "difference (points)": 1.0,
                "95% CI low": 0.5,
                "95% CI high": 1.5,
                "per seed": "+1.00, +1.00",
            }
            for c in bict.claims(results)
        ]
    )
    monkeypatch.setattr(type(bict), "check_claims", lambda self, *a, **k: claims)
    monkeypatch.setattr("compat.experiments.bict.sweep_reading", lambda *a, **k: None)
    verdict = bict.verdict(results, "l2")
    assert verdict.startswith(
        "**l2 distance: partly reproduced.** The upgraded gallery beats the stored one at every generation; the BCT half costs the forward upgrade"
    )
    assert "every one of 2 seeds agrees" in verdict


def test_the_heatmaps_share_one_colour_scale_and_the_difference_is_centred():
    import matplotlib.pyplot as plt
    import pandas as pd

    from compat import plots

    a = pd.DataFrame([[10.0, 2.0], [12.0, 14.0]], index=["gen 2", "gen 3"], columns=["gen 1", "gen 2"])
    b = a - 1.5
    fig = plots.shared_heatmaps({"A": a, "B": b}, difference=("A", "B"))
    meshes = [ax.collections[0] for ax in fig.axes if ax.collections]
    assert [m.get_clim() for m in meshes[:2]] == [(0.5, 14.0)] * 2  # one scale over both panels
    low, high = meshes[2].get_clim()
    assert low == -high == -1.5  # the difference, centred on zero
    plt.close(fig)
