"""The shape every experiment shares: a new experiment is one module (here, one class in a test),
config flows the same way from the CLI, papermill and Python, and one loader reads every result."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import TINY

from compat.cli import main
from compat.config import get_profile
from compat.errors import ConfigError
from compat.store import Store

TINY = {**TINY, "bct.ablation": "false"}


@pytest.fixture
def example_experiment():
    """A fourth experiment, written as a new module would be: its config section, its plan, nothing else."""
    from compat.artefacts import ModelSpec, SubsetSpec
    from compat.experiments import EXPERIMENTS, Case, Experiment, Plan, register_experiment
    from compat.experiments.base import ComparisonEntry
    from compat.methods import method_options

    @dataclass(frozen=True)
    class ExampleConfig:
        weight: float = 3.0

    @register_experiment("example")
    class Example(Experiment):
        config_class = ExampleConfig
        comparison = (ComparisonEntry("heavy BCT", "heavy BCT new/old", "d old floats", "nothing", ("bct",)),)

        def plan(self, profile, seed, ablation=False):
            common = {"data": profile.data, "model": profile.model, "seed": seed}
            old = ModelSpec(subset=SubsetSpec("extended-class", 0.5, "old"), train=profile.old_train, **common)
            new = ModelSpec(
                subset=SubsetSpec("extended-class", 0.5, "new"),
                train=profile.new_train,
                method=method_options("bct", profile.example.weight),
                parent=old,
                **common,
            )
            indep = ModelSpec(subset=SubsetSpec("extended-class", 0.5, "new"), train=profile.new_train, **common)
            return Plan(
                {"old": old, "independent": indep, "heavy_bct": new},
                [
                    Case("old/old", "old", "old"),
                    Case("independent new/new", "independent", "independent"),
                    Case("heavy BCT new/old", "heavy_bct", "old"),
                ],
            )

    yield EXPERIMENTS["example"]
    del EXPERIMENTS["example"]


def test_a_new_experiment_needs_only_its_own_module(example_experiment, tmp_path, capsys, monkeypatch):
    from compat.compare import comparison_entries
    from compat.results import load_result_files

    assert ("example", example_experiment.comparison[0]) in comparison_entries()  # its comparison row, from its module

    profile = get_profile("smoke", {**TINY, "example.weight": "2"})
    assert profile.example.weight == 2.0  # its section is registered with it
    store = Store(tmp_path / "c", tmp_path / "r")
    results = example_experiment.run(profile, store)  # the shared runner
    assert [r["kind"] for r in results] == ["main"] and results[0]["experiment"] == "example"
    loaded = load_result_files(example_experiment, profile, store)  # read back by key, nothing trained
    assert [r["key"] for r in loaded] == [r["key"] for r in results]
    row = next(r for r in loaded[0]["rows"] if r["case"] == "heavy BCT new/old" and r["distance"] == "l2")
    assert row["query"] == "heavy_bct" and row["gain_top1"] is not None
    assert example_experiment.point_table(loaded).loc["heavy BCT new/old", "top1"] == row["top1"]
    # the command line knows it too
    monkeypatch.setenv("COMPAT_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("COMPAT_RESULTS", str(tmp_path / "r"))
    assert (
        main(["run", "example", "--profile", "smoke", *sum((["--set", f"{k}={v}"] for k, v in TINY.items()), []), "--set", "example.weight=2"]) == 0
    )
    assert "heavy BCT new/old" in capsys.readouterr().out


def test_the_same_override_reaches_the_same_result_key_from_every_path(tmp_path):
    from compat.booktools import execute
    from compat.cli import _parse_sets
    from compat.experiments import get_experiment

    bct = get_experiment("bct")
    expected = bct.result_key(get_profile("smoke", {"new_train.lr": 0.05, "protocol.seeds": [0, 1]}), 0)
    # the command line: --set key=value text
    cli = get_profile("smoke", _parse_sets(["new_train.lr=0.05", "protocol.seeds=0,1"]))
    assert bct.result_key(cli, 0) == expected
    # `python -m compat book execute --set`: the notebook's injected `overrides` parameter
    out = tmp_path / "bct.ipynb"
    assert (
        main(
            [
                "book",
                "execute",
                "notebooks/bct.ipynb",
                "--profile",
                "smoke",
                "--set",
                "new_train.lr=0.05",
                "--set",
                "protocol.seeds=0,1",
                "--prepare-only",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    injected = next(c for c in json.loads(out.read_text())["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    namespace = {}
    exec("".join(injected["source"]), namespace)
    assert namespace["overrides"] == {"new_train.lr": 0.05, "protocol.seeds": [0, 1]}  # typed as the config read them, not "0,1"
    assert bct.result_key(get_profile(namespace["profile"], namespace["overrides"]), 0) == expected
    # papermill's own -p passes text
    assert bct.result_key(get_profile("smoke", '{"new_train.lr": 0.05, "protocol.seeds": [0, 1]}'), 0) == expected
    # and every chapter notebook takes `overrides`
    for nb in sorted(Path("notebooks").glob("*.ipynb")):
        out = tmp_path / nb.name
        execute(nb, out, {"profile": "smoke", "overrides": {"protocol.seeds": [1]}}, prepare_only=True)
        cells = json.loads(out.read_text())["cells"]
        assert any('overrides = {"protocol.seeds": [1]}' in "".join(c["source"]) for c in cells)


def test_methods_are_registered_by_name():
    from compat.artefacts import ModelSpec, SubsetSpec
    from compat.methods import METHODS, method_options

    assert {"plain", "bct", "l2", "simclr"} <= set(METHODS)
    assert METHODS["bct"].needs_parent and not METHODS["plain"].needs_parent and METHODS["simclr"].num_views == 2
    with pytest.raises(ConfigError, match="unknown method 'lwf'; allowed: "):
        method_options("lwf")
    profile = get_profile("smoke")
    with pytest.raises(ConfigError, match="method 'l2' needs a parent"):
        ModelSpec(profile.data, SubsetSpec(), profile.model, profile.new_train, 0, method_options("l2"))
    with pytest.raises(ConfigError, match="method 'bct' has no option 'keep_ce'; its options: weight, normalize, label_smoothing"):
        method_options("bct", keep_ce=False)
    with pytest.raises(ConfigError, match="a model's method is a method's options"):
        ModelSpec(profile.data, SubsetSpec(), profile.model, profile.new_train, 0, "plain")


@pytest.mark.reliability(
    fault="writing committed result files from a checkout with uncommitted changes",
    behaviour="refused before training, so every result records the code that made it",
)
def test_result_files_need_a_clean_tree_under_results(tmp_path, monkeypatch):
    from compat import store as store_module

    monkeypatch.setattr(store_module, "git_revision", lambda: "abc123-dirty")
    monkeypatch.setattr(store_module, "project_root", lambda: tmp_path)
    with pytest.raises(ConfigError, match="uncommitted changes"):
        Store(tmp_path / "c", tmp_path / "results").write_result("bct", "smoke", "k", {})
    assert not (tmp_path / "results").exists()
    Store(tmp_path / "c", tmp_path / "elsewhere").write_result("bct", "smoke", "k", {})  # tests and CI write elsewhere


def test_an_executed_chapter_shows_the_parameters_that_ran_not_the_defaults(tmp_path):
    from compat.booktools import RAN_HEADER, execute

    out = execute(Path("notebooks/bct.ipynb"), tmp_path / "bct.ipynb", {"profile": "smoke", "overrides": {"protocol.seeds": [1]}}, prepare_only=True)
    cells = json.loads(out.read_text())["cells"]
    shown = ["".join(c["source"]) for c in cells if "remove-cell" not in c["metadata"].get("tags", [])]
    assert any(s.startswith(RAN_HEADER) and 'overrides = {"protocol.seeds": [1]}' in s for s in shown)
    assert not any(s.startswith('profile = "cpu"') for s in shown)  # the defaults cell is not on the page


def test_a_smoke_page_says_under_its_title_that_its_numbers_test_the_code(tmp_path):
    from compat.booktools import SMOKE_BANNER, execute

    def sources(profile):
        out = execute(Path("notebooks/bct.ipynb"), tmp_path / f"{profile}.ipynb", {"profile": profile}, prepare_only=True)
        return ["".join(c["source"]) for c in json.loads(out.read_text())["cells"]]

    smoke = sources("smoke")
    assert smoke[0].startswith("# ") and smoke[1] == SMOKE_BANNER and smoke.count(SMOKE_BANNER) == 1
    assert SMOKE_BANNER not in sources("cpu")


def test_every_chapter_states_its_verdict_with_the_base_class_signature():
    import inspect

    from compat.experiments import EXPERIMENTS, Experiment

    expected = inspect.signature(Experiment.verdict)
    chapters = [e for e in EXPERIMENTS.values() if e.tabulates]
    assert {e.name for e in chapters} == {"bct", "fct", "unibct", "bict"}
    for experiment in chapters:
        assert type(experiment).verdict is not Experiment.verdict, experiment.name
        assert inspect.signature(type(experiment).verdict) == expected, experiment.name


def test_the_provenance_table_lists_each_artefact_once_and_leaves_out_empty_columns():
    from compat.experiments.base import provenance_table

    def record(key, speed, acc, mse=None):
        return {
            "key": key,
            "train_seconds": 120.0,
            "images_per_s": speed,
            "final_train_acc": acc,
            "final_mse": mse,
            "precision": "bf16",
            "device": "cpu",
            "trained_at_revision": "0123456789abcdef",
        }

    seed0 = {"experiment": "recipe", "seed": 0, "models": {"old": record("a", 1501.37, 0.4), "new": record("b", 1499.5, 0.35)}}
    seed1 = {"experiment": "recipe", "seed": 1, "models": {"old": record("a", 1501.37, 0.4)}}  # the same model named again
    table = provenance_table([seed0, seed1])
    assert list(table.index) == [(0, "old"), (0, "new")] and "final MSE" not in table.columns
    assert table.loc[(0, "old"), "img/s"] == "1501" and table.loc[(0, "new"), "trained at"] == "0123456789ab"
    with_h = provenance_table([{"experiment": "recipe", "seed": 0, "models": {"h": record("c", None, None, mse=0.25)}}])
    assert with_h.loc[(0, "h"), "final MSE"] == 0.25 and "img/s" not in with_h.columns


def test_the_reader_meets_no_stored_artefact_name():
    """Issue 26: the store's names (``bct_heavy``, ``h_1``, "bct h 2") are part of the result keys; the provenance
    tables and training curves show the glossary's words instead, for every committed result file."""
    import re

    from compat.experiments import get_experiment
    from compat.paths import project_root
    from compat.store import Store

    store, labels = Store(results_root=project_root() / "results"), {}
    # the chapters whose provenance and curves name models one by one (UniBCT's read "scenario/method")
    for path in sorted(p for e in ("bct", "fct", "bict") for p in store.results.glob(f"{e}/cpu/*.json")):
        res = store.read_result(path.parts[-3], "cpu", path.stem)
        if "models" in res:
            labels.update({(res["experiment"], n): get_experiment(res["experiment"]).artefact_label(n, res) for n in res["models"]})
    internal = re.compile(r"_|^(bct|independent)( h)? \d|^(old|independent|bct|l2)$")
    assert {e for e, _ in labels} == {"bct", "fct", "bict"}
    assert not {k: v for k, v in labels.items() if internal.search(v)}
    assert labels[("bct", "bct_heavy")] == "BCT λ=10" and labels[("fct", "h_side")] == "h, side-info"


def test_the_artefact_labels_follow_the_glossary():
    from compat.experiments import get_experiment

    bict, fct = get_experiment("bict"), get_experiment("fct")
    assert bict.artefact_label("bct h 2 (chain-trained h)", {}) == "h of BiCT forward, gen 2 (chain-trained h)"
    assert bict.artefact_label("independent h 3", {}) == "h of FCT alone, gen 3"
    assert bict.artefact_label("bct 3, BCT to gen 1", {}) == "BCT model, gen 3, BCT to gen 1"
    assert bict.artefact_label("bct 2 (λ=0.3)", {}) == "BCT model, gen 2 (λ=0.3)"
    assert bict.artefact_label("independent 1", {}) == bict.artefact_label("bct 1", {}) == "old model, gen 1"
    ablation = {"rows": [{"case": "FCT side-info 32, BatchNorm not frozen new/old", "query": "independent", "gallery": "h_4"}]}
    assert fct.artefact_label("h_4", ablation) == "h, side-info 32, BatchNorm not frozen"
    assert fct.artefact_label("side-info 8-d", ablation) == "side-info 8-d"  # no row reads it: its own name
    assert get_experiment("unibct").artefact_label("open-class/old", {}) == "open-class/old"


def test_training_curves_read_every_image_models_log_and_leave_out_transformations():
    import matplotlib.pyplot as plt

    from compat import plots
    from compat.experiments.base import training_curves

    epochs = [{"epoch": 1, "loss_ce": 3.0, "loss_influence": 1.0, "train_acc": 0.1}, {"epoch": 2, "loss_ce": 2.0, "train_acc": 0.3}]
    results = [
        {"experiment": "bct", "kind": "main", "seed": s, "models": {"bct": {"epochs": epochs}, "h": {"epochs": [{"epoch": 1, "mse": 0.2}]}}}
        for s in (0, 1)
    ] + [{"experiment": "bct", "kind": "ablation", "seed": 0, "models": {"other": {"epochs": epochs}}}]
    curves = training_curves(results)
    assert set(curves["model"]) == {"BCT"} and len(curves) == 4  # two seeds x two epochs, by the reader's name; no h, no ablation
    first = curves[(curves["seed"] == 0) & (curves["epoch"] == 1)].iloc[0]
    assert first["loss"] == 4.0 and first["train accuracy (%)"] == pytest.approx(10.0)  # the terms summed
    fig = plots.training_curves(curves)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "train accuracy (%)"]
    plt.close(fig)


def test_plumbing_code_goes_behind_a_toggle_and_the_story_stays(tmp_path):
    from compat.booktools import STORY_LINES, execute

    out = execute(Path("notebooks/unibct.ipynb"), tmp_path / "u.ipynb", {"profile": "smoke"}, prepare_only=True)
    code = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    for cell in code:
        tags, lines = cell["metadata"].get("tags", []), len("".join(cell["source"]).strip().splitlines())
        if any(t.startswith("remove-") or t in ("parameters", "injected-parameters") for t in tags):
            assert "hide-input" not in tags
        elif lines > STORY_LINES:
            assert "hide-input" in tags or "hide-output" in tags, "".join(cell["source"])[:60]
        else:
            assert "hide-input" not in tags  # a call, a table, a figure: the story
    assert any("hide-input" in c["metadata"].get("tags", []) for c in code) and any(not c["metadata"].get("tags") for c in code)


def test_each_methods_options_key_as_the_shared_spec_did_and_a_fifth_method_registers_its_own():
    """The key forms, written out by hand: name, weight and normalize always (1.0 and False where a method has
    neither), any other option only away from its default, so every stored model keeps its key."""
    from dataclasses import dataclass

    from compat.methods import MethodOptions, method_options, register_method
    from compat.store import canonical

    assert canonical(method_options()) == {"name": "plain", "weight": 1.0, "normalize": False}
    assert canonical(method_options("bct", 2.0, normalize=True)) == {"name": "bct", "weight": 2.0, "normalize": True}
    assert canonical(method_options("l2", keep_ce=False)) == {"name": "l2", "weight": 1.0, "normalize": False, "keep_ce": False}
    assert canonical(method_options("simclr", temperature=0.1)) == {"name": "simclr", "weight": 1.0, "normalize": False}
    assert canonical(method_options("unibct", 0.5, refine=True, prototypes="raw")) == {
        "name": "unibct",
        "weight": 0.5,
        "normalize": False,
        "refine": True,
        "prototypes": "raw",
    }

    @dataclass(frozen=True)
    class AnchorOptions(MethodOptions):
        weight: float = 1.0
        margin: float = 0.1

    register_method("anchor (test)", AnchorOptions, needs_parent=False)(lambda ctx: [])
    assert canonical(method_options("anchor (test)", margin=0.3)) == {"name": "anchor (test)", "weight": 1.0, "normalize": False, "margin": 0.3}
    with pytest.raises(ConfigError, match="'anchor \\(test\\)' has no option 'tau'; its options: weight, margin"):
        method_options("anchor (test)", tau=1.0)
    with pytest.raises(ConfigError, match="weight 0 and keep_ce=False has no loss left"):
        method_options("l2", 0.0, keep_ce=False)
    with pytest.raises(ConfigError, match="must be a MethodOptions dataclass"):
        register_method("loose (test)", dict, needs_parent=False)(lambda ctx: [])
