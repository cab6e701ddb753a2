"""The recipe study's decision rule (recipe_reading.decide), fixed before its runs, on constructed result files."""

import numpy as np
import pytest

from compat.config import get_profile
from compat.errors import ConfigError
from compat.experiments.recipe import INCUMBENT, RecipeConfig, combined_changes
from compat.experiments.recipe_reading import choose, decide
from compat.intervals import Interval
from compat.store import Store

N = 2000  # val queries


def _result(store, name, seed, hits, epochs=6):
    """A constructed result: top-1 hit (rank 0) for the queries in ``hits``, a miss (rank 5) elsewhere."""
    key = f"{abs(hash((name, seed))) % 10**12:012d}"
    rank = np.where(hits, 0, 5).astype(np.int32)
    store.write_per_query("recipe", "cpu", key, {"l2|flip-averaged|rank": rank, "l2|flip-averaged|ap": np.zeros(N, np.float32)})
    log = [{"epoch": e + 1, "images_per_s": 1000.0, "seconds": 50.0} for e in range(epochs)]  # 50,000 images an epoch
    return {"candidate": name, "seed": seed, "profile": "cpu", "key": key, "models": {"old": {"epochs": log, "precision": "fp32"}}}


def _hits(rate, seed):
    return np.random.default_rng(seed).random(N) < rate


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "cache", tmp_path / "results")


def test_a_win_needs_its_interval_above_zero_in_every_seed_within_the_budget(store):
    config = RecipeConfig(seeds=(0, 1))
    results = []
    for seed in (0, 1):
        base = _hits(0.15, seed)
        results.append(_result(store, INCUMBENT, seed, base))
        results.append(_result(store, "label smoothing 0.2", seed, base | _hits(0.05, 10 + seed)))  # about +4 points
        results.append(_result(store, "lookahead", seed, base if seed == 0 else base | _hits(0.06, 20)))  # one seed only
        results.append(_result(store, "batch 512, lr 0.4", seed, base & _hits(0.7, 30 + seed)))  # about -4.5 points
        results.append(_result(store, "8 epochs", seed, base | _hits(0.08, 40 + seed), epochs=8))  # better, at 8/6 the cost
    table, chosen = decide(results, config, store)
    assert table.loc["label smoothing 0.2", "verdict"] == "wins"
    assert table.loc["lookahead", "verdict"] == "inside the noise"  # seed 0 gains exactly nothing
    assert table.loc["batch 512, lr 0.4", "verdict"] == "below"
    assert table.loc["8 epochs", "verdict"] == "over the budget" and table.loc["8 epochs", "samples seen / budget"] == pytest.approx(8 / 6)
    assert chosen == "label smoothing 0.2"
    oracle = np.mean([(_hits(0.15, s) | _hits(0.05, 10 + s)).mean() - _hits(0.15, s).mean() for s in (0, 1)]) * 100
    assert table.loc["label smoothing 0.2", "difference"] == pytest.approx(oracle)


def test_no_winner_keeps_the_incumbent_and_a_diverged_candidate_loses(store):
    config = RecipeConfig(candidates=(INCUMBENT, "lookahead"), seeds=(0,))
    base = _hits(0.15, 0)
    results = [_result(store, INCUMBENT, 0, base), {"candidate": "lookahead", "seed": 0, "diverged": "the loss became nan"}]
    table, chosen = decide(results, config, store)
    assert table.loc["lookahead", "verdict"] == "diverged" and chosen == INCUMBENT
    with pytest.raises(ConfigError, match="incumbent"):
        decide(results[1:], config, store)


def test_runs_at_different_precisions_are_not_compared(store):
    results = [_result(store, INCUMBENT, 0, _hits(0.15, 0)), _result(store, "lookahead", 0, _hits(0.3, 1))]
    results[1]["models"]["old"]["precision"] = "bf16"
    with pytest.raises(ConfigError, match="different precisions"):
        decide(results, RecipeConfig(candidates=(INCUMBENT, "lookahead"), seeds=(0,)), store)


def _iv(value, low, high):
    return Interval(value, low, high, (value, value))


def test_a_combination_is_chosen_only_when_it_beats_the_best_single_winner():
    winners = ["label smoothing 0.2", "lookahead"]
    combo = "label smoothing 0.2 + lookahead"
    intervals = {"label smoothing 0.2": _iv(1.0, 0.5, 1.5), "lookahead": _iv(2.0, 1.5, 2.5), combo: _iv(2.2, 1.7, 2.7)}
    assert choose(winners, intervals, tuple(winners), lambda a, b: _iv(0.2, -0.3, 0.7)) == "lookahead"  # a tie: fewer changes
    assert choose(winners, intervals, tuple(winners), lambda a, b: _iv(0.8, 0.3, 1.3)) == combo
    assert choose(winners, {k: v for k, v in intervals.items() if k != combo}, tuple(winners), None) == "lookahead"  # not run
    assert choose([], intervals, (), None) == INCUMBENT


def test_combined_changes_refuse_conflicts_and_lookahead_replaces_the_ema(monkeypatch):
    from compat.experiments import recipe

    merged = combined_changes(("label smoothing 0.2", "lookahead"))
    assert merged["train"] == {"label_smoothing": 0.2, "lookahead_every": 5}
    monkeypatch.setitem(recipe.CANDIDATES, "label smoothing 0.3", {"model": {}, "train": {"label_smoothing": 0.3}, "idea": ""})
    with pytest.raises(ConfigError, match="another candidate"):
        RecipeConfig(combine=("label smoothing 0.2", "label smoothing 0.3"))
    with pytest.raises(ConfigError, match="two or more"):
        RecipeConfig(combine=("lookahead",))


def test_the_combination_is_a_candidate_of_the_profile():
    profile = get_profile("cpu", {"recipe.combine": ["label smoothing 0.2", "lookahead"]})
    assert profile.recipe.names[-1] == "label smoothing 0.2 + lookahead"
    assert profile.recipe.names[0] == INCUMBENT


def test_the_table_shows_rule_3s_test_on_the_combinations_row(store):
    pair = ("label smoothing 0.2", "lookahead")
    config = RecipeConfig(candidates=(INCUMBENT, *pair), combine=pair, seeds=(0, 1))
    combo = config.names[-1]
    results, gains = [], {"label smoothing 0.2": 0.05, "lookahead": 0.07, combo: 0.08}
    for seed in (0, 1):
        base = _hits(0.15, seed)
        results.append(_result(store, INCUMBENT, seed, base))
        for i, (name, rate) in enumerate(gains.items()):
            results.append(_result(store, name, seed, base | _hits(rate, 10 * i + seed + 1)))
    table, chosen = decide(results, config, store)
    hits = {r["candidate"]: [] for r in results}
    for seed in (0, 1):
        for i, (name, rate) in enumerate(gains.items()):
            hits[name].append((_hits(0.15, seed) | _hits(rate, 10 * i + seed + 1)).mean())
    oracle = 100 * (np.mean(hits[combo]) - np.mean(hits["lookahead"]))
    shown = table.loc[combo, "minus the best single winner"]
    value, rest = shown.split(" [", 1)
    assert abs(float(value) - oracle) <= 0.005 + 1e-9 and rest.endswith("] (lookahead)")
    assert (table["minus the best single winner"].drop(combo) == "").all()  # empty cells, never NaN on the page
    assert chosen in (combo, "lookahead")
