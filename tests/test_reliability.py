"""Guards that fail closed: bad environment values, empty paths, degenerate evaluator input and
benchmark arguments are refused with one clear error before any work."""

import numpy as np
import pytest

from compat.cli import main
from compat.errors import ConfigError
from compat.evaluate import retrieval_metrics


@pytest.mark.parametrize("value", ["NEVER", "no", "", "0"])
def test_compat_train_accepts_only_its_documented_values(value, monkeypatch):
    from compat.artefacts import training_policy

    monkeypatch.setenv("COMPAT_TRAIN", value)
    with pytest.raises(ConfigError, match=f"unknown COMPAT_TRAIN {value!r}; allowed: 'allow', 'never'"):
        training_policy()


@pytest.mark.parametrize("name", ["COMPAT_CACHE", "COMPAT_RESULTS", "COMPAT_DATA_DIR"])
def test_an_empty_path_variable_is_an_error_not_the_current_directory(name, monkeypatch):
    from compat import paths

    monkeypatch.setenv(name, "  ")
    getter = {"COMPAT_CACHE": paths.cache_dir, "COMPAT_RESULTS": paths.results_dir, "COMPAT_DATA_DIR": paths.data_cache_dir}[name]
    with pytest.raises(ConfigError, match=f"{name} is set but empty"):
        getter()


def test_the_evaluator_refuses_a_single_item():
    with pytest.raises(ConfigError, match="at least two items, got 1"):
        retrieval_metrics(np.ones((1, 4)), np.ones((1, 4)), np.array([0]))


@pytest.mark.parametrize("argv, message", [
    (["bench", "evaluate", "--repeats", "0"], "--repeats=0 is out of range"),
    (["bench", "evaluate", "--n", "1"], "--n=1 is out of range"),
    (["bench", "train", "--steps", "0"], "--steps=0 is out of range"),
])
def test_benchmarks_refuse_arguments_that_measure_nothing(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
