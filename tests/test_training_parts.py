"""The parts the training loop is made of, each against a hand-computed oracle: weight averages, checkpoints and
resuming, the divergence watch, the sharding of a batch between processes, the schedule and the progress rule."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from compat import distributed
from compat.averaging import WeightAverage
from compat.checkpoints import Checkpoints, kept_checkpoint
from compat.distributed import Sharding
from compat.divergence import TrainingDiverged, check_finite, divergence_verdict
from compat.errors import ConfigError
from compat.progress import show_progress
from compat.schedule import lr_factor, set_learning_rate

CPU = torch.device("cpu")


def _linear(value: float) -> nn.Linear:
    layer = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(value)
    return layer


def _value(model: nn.Linear) -> float:
    return model.weight.detach().item()


def _set(model: nn.Linear, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)


# -- weight averages ---------------------------------------------------------------------------------------------


def test_without_an_average_the_saved_model_is_the_model_and_nothing_is_checkpointed():
    model = _linear(1.0)
    average = WeightAverage(model, ema_decay=0.0, lookahead_every=0, total=10)
    average.update(0)
    assert not average.kept and average.saved() is model and average.state_dict() == {}


def test_the_ema_follows_the_warmed_up_decay_and_ends_in_the_model():
    model = _linear(0.0)
    average = WeightAverage(model, ema_decay=0.5, lookahead_every=0, total=3)
    expected, n = 0.0, 0  # AveragedModel copies the weights at its first update, then d = min(0.5, (1 + n) / (10 + n))
    for step, w in enumerate([4.0, 8.0, 2.0]):
        _set(model, w)
        average.update(step)
        if n == 0:
            expected = w
        else:
            d = min(0.5, (1 + n) / (10 + n))
            expected = d * expected + (1 - d) * w
        n += 1
    assert average.kept and average.saved() is not model
    assert _value(average.saved()) == pytest.approx(expected)
    average.finish()
    assert _value(model) == pytest.approx(expected)


def test_lookahead_pulls_every_k_steps_and_saves_a_copy_of_the_slow_weights():
    model = _linear(0.0)
    average = WeightAverage(model, ema_decay=0.0, lookahead_every=2, total=4)
    _set(model, 1.0)
    average.update(0)  # no pull after step 1 of 2
    assert _value(model) == 1.0
    _set(model, 2.0)
    average.update(1)  # pull: slow += (1 - d)(w - slow), d = 0.95^5 (2/4)^3; then w = slow
    d = 0.95**5 * 0.5**3
    slow = 0.0 + (1 - d) * 2.0
    assert _value(model) == pytest.approx(slow)
    saved = average.saved()
    assert saved is not model and _value(saved) == pytest.approx(slow)
    _set(model, 5.0)
    average.finish()  # d = 1: the slow weights win
    assert _value(model) == pytest.approx(slow)


def test_the_averages_round_trip_through_a_checkpoint():
    model = _linear(0.0)
    average = WeightAverage(model, ema_decay=0.9, lookahead_every=2, total=8)
    for step, w in enumerate([1.0, 3.0, -2.0]):
        _set(model, w)
        average.update(step)
    state = average.state_dict()
    assert set(state) == {"ema", "lookahead"}
    other_model = _linear(7.0)
    other = WeightAverage(other_model, ema_decay=0.9, lookahead_every=2, total=8)
    other.load_state_dict(state)
    other_model.load_state_dict(model.state_dict())
    for step, w in enumerate([4.0, 0.5], start=3):
        for m, a in ((model, average), (other_model, other)):
            _set(m, w)
            a.update(step)
    assert _value(other.saved()) == _value(average.saved())
    assert torch.equal(other.lookahead.slow[0], average.lookahead.slow[0])


# -- checkpoints -------------------------------------------------------------------------------------------------


def _state(epoch: int) -> dict:
    return {"model": {"w": torch.full((2,), float(epoch))}, "epoch": epoch, "terms": {"0": {"t": 1}}, "branched_at_epoch": None}


def test_checkpoints_log_every_epoch_and_keep_only_the_asked_epochs(tmp_path):
    checkpoints = Checkpoints(tmp_path / "run", keep_epochs={2})
    for epoch in (1, 2, 3):
        checkpoints.save({"epoch": epoch, "loss": 1.0 / epoch}, lambda e=epoch: _state(e))
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in (tmp_path / "run").glob("epoch-*.pt")) == ["epoch-2.pt"]
    state, branched = checkpoints.resume(CPU)
    assert state["epoch"] == 3 and branched is None and torch.equal(state["model"]["w"], torch.full((2,), 3.0))


def test_a_branch_starts_from_the_kept_epoch_with_fresh_terms_and_stays_a_branch(tmp_path):
    trunk = Checkpoints(tmp_path / "trunk", keep_epochs={2})
    for epoch in (1, 2):
        trunk.save({"epoch": epoch}, lambda e=epoch: _state(e))
    branch = Checkpoints(tmp_path / "branch")
    state, branched = branch.resume(CPU, branch=kept_checkpoint(tmp_path / "trunk", 2))
    assert (state["epoch"], state["terms"], branched) == (2, {}, 2)
    branch.save({"epoch": 3}, lambda: {**_state(3), "branched_at_epoch": 2})
    state, branched = branch.resume(CPU, branch=kept_checkpoint(tmp_path / "trunk", 2))
    assert (state["epoch"], branched) == (3, 2)  # its own checkpoint wins and still says where it branched


def test_a_damaged_checkpoint_is_said_removed_and_never_resumed(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save({"epoch": 1}, lambda: _state(1))
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="is damaged .* training starts afresh"):
        assert checkpoints.resume(CPU) == (None, None)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_without_a_workdir_nothing_is_written_or_resumed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoints = Checkpoints(None, keep_epochs={1})
    checkpoints.save({"epoch": 1}, lambda: pytest.fail("the state is built only where it is written"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkpoints.resume(CPU) == (None, None)
    assert list(tmp_path.iterdir()) == []


# -- divergence watch --------------------------------------------------------------------------------------------


def test_a_non_finite_loss_stops_training_naming_the_place_and_the_terms():
    finite = torch.tensor(2.0)
    check_finite(finite, {"ce": finite}, desc="run", epoch=0, step=0, lr=0.1, base_lr=0.2)
    with pytest.raises(
        TrainingDiverged, match=r"run: the loss became nan at epoch 2, step 4 \(terms: ce=nan\); the learning rate was 0.05 \(lr=0.2\)"
    ):
        check_finite(torch.tensor(math.nan), {"ce": torch.tensor(math.nan)}, desc="run", epoch=1, step=3, lr=0.05, base_lr=0.2)


def _log(accuracies, losses):
    return [{"epoch": i + 1, "loss_a": loss / 2, "loss_b": loss / 2, "train_acc": acc} for i, (acc, loss) in enumerate(zip(accuracies, losses))]


LABELS = np.array([0, 0, 1, 2])  # chance (the most frequent class): 0.5


@pytest.mark.parametrize(
    "log, classifies, diverged",
    [
        (_log([0.7, 0.74], [2.0, 3.0]), True, True),  # at 1.5 x chance or below (0.75) and the summed loss rose
        (_log([0.7, 0.76], [2.0, 3.0]), True, False),  # above 1.5 x chance
        (_log([0.7, 0.6], [3.0, 2.0]), True, False),  # the loss fell
        (_log([0.5], [3.0]), True, False),  # one epoch: nothing to compare
        ([{"epoch": 1, "loss_a": 1.0, "train_acc": None}, {"epoch": 2, "loss_a": 2.0, "train_acc": None}], False, False),
        ([], True, False),
    ],
)
def test_a_run_is_diverged_when_accuracy_is_at_chance_and_the_loss_rose(log, classifies, diverged):
    verdict = divergence_verdict(log, LABELS, classifies)
    assert (verdict is not None) == diverged
    if diverged:
        assert verdict == "final training accuracy 0.7400 is at chance level (0.5000) and the loss rose from 2 (epoch 1) to 3"


# -- sharding ----------------------------------------------------------------------------------------------------


def test_one_process_holds_the_whole_batch_with_batchnorm_over_its_groups():
    shard = Sharding.of(batch_size=8, bn_batch=0)
    assert shard == Sharding(rank=0, size=1, share=8, group=8)
    assert Sharding.of(batch_size=8, bn_batch=4).group == 4
    assert torch.equal(shard.local(torch.arange(8)), torch.arange(8))


def test_each_process_takes_its_rows_and_uneven_splits_are_refused(monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: (1, 2))
    shard = Sharding.of(batch_size=8, bn_batch=2)
    assert (shard.share, shard.group) == (4, 2)
    assert shard.local(torch.arange(8)).tolist() == [4, 5, 6, 7]
    with pytest.raises(ConfigError, match="batch_size=9 does not split between 2 processes"):
        Sharding.of(batch_size=9, bn_batch=0)
    with pytest.raises(ConfigError, match="2 processes each hold 4 images of a step, but bn_batch=8 asks for BatchNorm statistics over 8"):
        Sharding.of(batch_size=8, bn_batch=8)
    with pytest.raises(ConfigError, match="bn_batch=3"):
        Sharding.of(batch_size=8, bn_batch=3)


# -- schedule and progress ---------------------------------------------------------------------------------------


def test_the_schedule_warms_up_linearly_then_decays_by_a_cosine_to_zero():
    assert [lr_factor(s, 4, 12) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 12) == 1.0
    assert lr_factor(8, 4, 12) == pytest.approx(0.5)  # half-way through the decay
    assert lr_factor(12, 4, 12) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, 0, 1) == 1.0  # no warm-up


def test_each_parameter_group_takes_the_rate_times_its_scale():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr_scale": 4.0}, {"params": [b]}], lr=1.0)
    set_learning_rate(optimizer, 0.5)
    assert [g["lr"] for g in optimizer.param_groups] == [2.0, 0.5]


def test_progress_bars_are_drawn_as_asked_else_by_the_environment(monkeypatch):
    assert show_progress(True) and not show_progress(False)
    monkeypatch.setenv("COMPAT_PROGRESS", "1")
    assert show_progress(None)
    monkeypatch.delenv("COMPAT_PROGRESS")
    monkeypatch.setenv("CI", "1")
    assert not show_progress(None)
