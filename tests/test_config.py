"""Profiles and overrides: bad values fail before any work, naming the allowed ones."""

import pytest

from compat.cli import main
from compat.config import DataConfig, get_profile
from compat.errors import ConfigError


def test_profiles_and_overrides():
    assert get_profile("cpu").data.image_size == 32 and get_profile("gpu").data.image_size == 64
    assert get_profile("smoke").data.dataset == "synthetic"
    assert get_profile("cpu", {"data.image_size": "64"}).data.image_size == 64


def test_bad_values_name_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown profile 'laptop'; allowed: 'smoke', 'cpu', 'gpu'"):
        get_profile("laptop")
    with pytest.raises(ConfigError, match="unknown config key 'data.size'; allowed at this level: dataset, image_size"):
        get_profile("cpu", {"data.size": 3})
    with pytest.raises(ConfigError, match="unknown image_size 48; allowed: 64, 32"):
        get_profile("cpu", {"data.image_size": "48"})
    with pytest.raises(ConfigError, match="'data.image_size' wants an integer, got 'big'"):
        get_profile("cpu", {"data.image_size": "big"})
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        DataConfig(dataset="mnist")


def test_smoke_profile_loads_synthetic_data():
    data = get_profile("smoke").data.load()
    assert data.name == "synthetic" and data.num_classes == 20


def test_cli_reports_bad_profile(capsys):
    assert main(["book", "execute", "notebooks/data_and_protocol.ipynb", "--profile", "laptop"]) == 2
    assert "unknown profile 'laptop'" in capsys.readouterr().err


def test_cli_run_rejects_unknown_experiment_profile_and_key(capsys):
    assert main(["run", "fct2", "--profile", "smoke"]) == 2
    assert "unknown experiment 'fct2'; allowed: 'recipe', 'bct', 'fct'" in capsys.readouterr().err
    assert main(["run", "bct", "--profile", "tiny"]) == 2
    assert "unknown profile 'tiny'" in capsys.readouterr().err
    assert main(["run", "bct", "--profile", "smoke", "--set", "bct.lambda=3"]) == 2
    assert "unknown config key 'bct.lambda'" in capsys.readouterr().err
    assert main(["run", "bct", "--profile", "smoke", "--set", "old_train.epochs=0"]) == 2
    assert "epochs=0 is out of range" in capsys.readouterr().err


def test_seed_tuples_parse_from_the_command_line_papermill_and_python():
    for value in ("3,4", "[3, 4]", [3, 4], (3, 4), ["3", "4"]):
        assert get_profile("smoke", {"protocol.seeds": value}).protocol.seeds == (3, 4)
    assert get_profile("smoke", {"protocol.seeds": 0}).protocol.seeds == (0,)
    assert get_profile("smoke", '{"protocol.seeds": [1, 2]}').protocol.seeds == (1, 2)  # papermill -p overrides TEXT
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        get_profile("smoke", {"protocol.seeds": "1,1"})


def test_one_seed_rule_a_sections_own_seeds_replace_the_protocols_for_that_experiment_only():
    from compat.experiments import get_experiment

    bct, unibct = get_experiment("bct"), get_experiment("unibct")
    profile = get_profile("smoke", {"protocol.seeds": "4,5", "unibct.seeds": "7"})
    assert bct.seeds(profile) == (4, 5) and unibct.seeds(profile) == (7,)
    assert unibct.seeds(get_profile("smoke", {"protocol.seeds": "4,5"})) == (4, 5)  # smoke's unibct names none


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("protocol.seeds", "a", "'protocol.seeds' wants an integer, got 'a'"),
        ("protocol.seeds", "1.5", "'protocol.seeds' wants an integer, got '1.5'"),
        ("protocol.seeds", [True], "'protocol.seeds' wants an integer, got True"),
        ("protocol.old_fraction", "nan", "'protocol.old_fraction' wants a finite number, got 'nan'"),
        ("old_train.lr", float("nan"), "'old_train.lr' wants a finite number, got nan"),
        ("old_train.lr", "inf", "wants a finite number"),
        ("fct.cost_sizes", "a", "'fct.cost_sizes' wants an integer, got 'a'"),
        ("protocol.distances", "l2,manhattan", "unknown protocol.distances item 'manhattan'"),
        ("bct.ablation", "maybe", "'bct.ablation' wants true or false, got 'maybe'"),
        ("protocol", "1", "names a group"),
    ],
)
def test_bad_values_fail_naming_their_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        get_profile("smoke", {key: value})


def test_every_key_is_reachable_and_sections_come_from_the_registry():
    from compat.config import config_keys
    from compat.experiments import EXPERIMENTS

    keys = config_keys(get_profile("cpu"))
    assert {"protocol.seeds", "old_train.lr", "bct.influence_weight", "fct.transformation.epochs", "recipe.base_train.epochs"} <= set(keys)
    assert {k.split(".")[0] for k in keys} >= set(EXPERIMENTS)
    with pytest.raises(ConfigError, match="overrides must be a mapping"):
        get_profile("smoke", "[1, 2]")


def test_fields_validated_together_can_change_together_in_any_order():
    for order in (("old_train.epochs", "old_train.warmup_epochs"), ("old_train.warmup_epochs", "old_train.epochs")):
        values = {"old_train.epochs": "1", "old_train.warmup_epochs": "0"}
        profile = get_profile("gpu", {k: values[k] for k in order})
        assert (profile.old_train.epochs, profile.old_train.warmup_epochs) == (1, 0.0)
    with pytest.raises(ConfigError, match="warmup_epochs=5"):
        get_profile("gpu", {"old_train.epochs": "1"})  # alone, it conflicts with the profile's warm-up


def test_the_rerun_pages_parameter_table_is_read_from_the_code():
    from pathlib import Path

    from compat.parameters import allowed, notebook_parameters, parameter_table

    table = parameter_table()
    assert (table["meaning"] != "").all(), list(table.index[table["meaning"] == ""])  # every key documented
    assert table.loc["model.width", "cpu"] == str(get_profile("cpu").model.width)
    assert table.loc["protocol.seeds", "gpu"] == "0, 1, 2" and table.loc["protocol.seeds", "type"] == "list of int"
    assert allowed("old_train.lr") == "(0, 100]" and allowed("protocol.test_flip") == "true or false"
    assert "'airnet'" in allowed("model.backbone") and allowed("protocol.seeds").startswith("each item: [0, ")
    assert allowed("bict.generations") == "each item: (0, 1]"  # probed with the current list plus one bad item
    params = notebook_parameters(Path("notebooks/data_and_protocol.ipynb")).set_index("parameter")
    assert params.loc["classes_shown", "default"] == "8" and params.loc["classes_shown", "meaning"] == "classes in the image grid"
