"""Results bound to their keys, writers that never cross their digests, files without a digest never used, and an
evaluator that refuses what float32 cannot rank (issue: reliability, second pass)."""

import json
import multiprocessing
import os

import numpy as np
import pytest
import torch

from compat.errors import ConfigError
from compat.evaluate import retrieval_metrics
from compat.store import DamagedArtefact, Store, read_verified


def _payload(key, n=0):
    return {"experiment": "bct", "profile": "cpu", "key": key, "seed": 0, "kind": "main", "rows": [], "config": {},
            "wall_seconds": {}, "environment": {}, "filler": "x" * (50_000 + n)}


def _writer(root, n, rounds):
    store = Store(root / "cache", root / "results")
    for i in range(rounds):
        store.write_result("bct", "cpu", "0123456789abcdef", _payload("0123456789abcdef", 1000 * n + i))


@pytest.mark.reliability(fault="several processes write the same result file at once",
                         behaviour="the file and its sha256 sidecar always come from one writer: every read afterwards is intact")
def test_concurrent_writers_never_cross_their_digests(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for _ in range(3):  # repeated: a race shows in some tries only
        workers = [ctx.Process(target=_writer, args=(tmp_path, n, 15)) for n in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
            assert w.exitcode == 0
        store = Store(tmp_path / "cache", tmp_path / "results")
        assert store.read_result("bct", "cpu", "0123456789abcdef")["key"] == "0123456789abcdef"


@pytest.mark.reliability(fault="a result file copied under another key's name, with fresh sidecars",
                         behaviour="refused as belonging to another key (its recorded key, experiment and profile are checked)")
def test_a_result_copied_under_another_key_is_refused(tmp_path):
    store = Store(tmp_path / "cache", tmp_path / "results")
    store.write_result("bct", "cpu", "aaaaaaaaaaaaaaaa", _payload("aaaaaaaaaaaaaaaa"))
    moved = json.loads(store.result_path("bct", "cpu", "aaaaaaaaaaaaaaaa").read_text())
    store.write_result("bct", "cpu", "bbbbbbbbbbbbbbbb", moved)  # the copy, with a sidecar made for it
    with pytest.raises(DamagedArtefact, match="belongs to another key"):
        store.read_result("bct", "cpu", "bbbbbbbbbbbbbbbb")
    assert store.read_result("bct", "cpu", "aaaaaaaaaaaaaaaa")["key"] == "aaaaaaaaaaaaaaaa"


@pytest.mark.reliability(fault="a stored model or embeddings file whose sha256 sidecar was deleted (and the file zeroed)",
                         behaviour="never used: the model is refused as damaged, the embeddings are made again")
def test_a_file_without_its_digest_is_never_used(tmp_path):
    store = Store(tmp_path / "cache", tmp_path / "results")
    model = torch.nn.Linear(3, 2)
    store.save_model("k1", model, {"classes": [0, 1]})
    weights = store.model_dir("k1") / "model.pt"
    weights.with_name("model.pt.sha256").unlink()
    weights.write_bytes(b"\0" * weights.stat().st_size)
    with pytest.raises(DamagedArtefact, match="no recorded sha256"):
        store.load_model("k1", torch.nn.Linear(3, 2))
    store.save_embeddings("e1", np.ones((4, 2), np.float32))
    path = store.embeddings_path("e1")
    path.with_name(path.name + ".sha256").unlink()
    with pytest.warns(UserWarning, match="no recorded sha256"):
        assert store.load_embeddings("e1") is None
    assert not path.exists()


def test_read_verified_checks_the_bytes_it_returns(tmp_path):
    store = Store(tmp_path / "cache", tmp_path / "results")
    path = store.write_result("bct", "cpu", "cccccccccccccccc", _payload("cccccccccccccccc"))
    assert json.loads(read_verified(path))["key"] == "cccccccccccccccc"
    path.write_text(path.read_text().replace("cpu", "gpu", 1))
    with pytest.raises(DamagedArtefact, match="does not match the sha256"):
        read_verified(path)


def _oracle_top1(z, labels):
    d = ((z[:, None, :].astype(np.float64) - z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return 100.0 * np.mean(labels[d.argmin(1)] == labels)


@pytest.mark.parametrize("scale", [1e-30, 1e-25, 1e-12, 1e-3, 1.0, 1e3, 1e12, 5e18, 1e20])
@pytest.mark.reliability(fault="embeddings scaled over many orders of magnitude (float32 distances overflow or underflow)",
                         behaviour="the evaluator matches a float64 brute-force oracle, or refuses the input naming the scale")
def test_the_evaluator_matches_a_float64_oracle_or_refuses(scale):
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 5
    z = (rng.standard_normal((40, 8)) + labels[:, None]).astype(np.float64)
    scaled = (z * scale).astype(np.float32)
    try:
        top1 = retrieval_metrics(scaled, scaled, labels)["top1"]
    except ConfigError as exc:
        assert "largest magnitude" in str(exc) and not 1e-15 <= np.abs(scaled).max() <= 1e15
        return
    assert top1 == pytest.approx(_oracle_top1(z, labels))


@pytest.mark.reliability(fault="N x 0 embeddings", behaviour="one error naming the shape")
def test_embeddings_without_dimensions_are_refused():
    with pytest.raises(ConfigError, match="D >= 1"):
        retrieval_metrics(np.ones((5, 0), np.float32), np.ones((5, 0), np.float32), np.arange(5))


@pytest.mark.reliability(fault="a results or cache folder that is a file, or cannot take a new file (read-only)",
                         behaviour="refused before any model trains, naming the folder and the variable that moves it")
@pytest.mark.parametrize("role", ["results", "cache"])
def test_an_unwritable_folder_is_refused_before_training(role, tmp_path, monkeypatch):
    from compat.config import get_profile
    from compat.experiments import get_experiment

    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    store = Store(blocked if role == "cache" else tmp_path / "cache", blocked if role == "results" else tmp_path / "out")
    trained = []
    monkeypatch.setattr("compat.experiments.base.get_embeddings", lambda *a, **k: trained.append(a))
    with pytest.raises(ConfigError, match=f"the {role} folder .*blocked cannot be written.*COMPAT_{role.upper()}"):
        get_experiment("bct").run_seed(get_profile("smoke"), 0, store)
    assert trained == []  # nothing trained or embedded first
    if os.geteuid() != 0:  # root writes into read-only folders: the probe is then right to pass
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o555)
        with pytest.raises(ConfigError, match="cannot be written"):
            Store(tmp_path / "cache", readonly).check_result_writable()


@pytest.mark.reliability(fault="code with uncommitted changes writing into another checkout's results/ through COMPAT_RESULTS",
                         behaviour="refused like a write into its own results/: files under any checkout's results/ come from clean code")
def test_dirty_code_cannot_write_into_another_checkouts_results(tmp_path, monkeypatch):
    from compat import store as store_module

    other = tmp_path / "other-checkout"
    (other / "results").mkdir(parents=True)
    (other / ".git").write_text("gitdir: elsewhere\n")  # a worktree's .git is a file
    (other / "pyproject.toml").write_text("[project]\nname = 'compat'\n")
    monkeypatch.setattr(store_module, "git_revision", lambda: "abc123-dirty")
    with pytest.raises(ConfigError, match="uncommitted changes.*other-checkout/results"):
        Store(tmp_path / "c", other / "results").write_result("bct", "smoke", "k", {})
    assert list((other / "results").iterdir()) == []
    monkeypatch.setattr(store_module, "git_revision", lambda: "abc123")
    Store(tmp_path / "c", other / "results").check_result_writable()  # clean code may (a queue's worktree)


@pytest.mark.parametrize("change", ["rows", "environment", "rows-not-a-list"])
@pytest.mark.reliability(fault="a result JSON missing fields (or with rows that are not a list of records), with a valid sidecar",
                         behaviour="refused as incomplete, naming the file, the missing field and the command that rebuilds it (no KeyError in a table)")
def test_a_result_missing_fields_is_refused_as_incomplete(tmp_path, change):
    store = Store(tmp_path / "cache", tmp_path / "results")
    payload = _payload("aaaaaaaaaaaaaaaa")
    if change == "rows-not-a-list":
        payload["rows"] = {"top1": 1.0}
    else:
        del payload[change]
    store.write_result("bct", "cpu", "aaaaaaaaaaaaaaaa", payload)
    lacks = "a list of rows" if change == "rows-not-a-list" else change
    with pytest.raises(DamagedArtefact, match=f"aaaaaaaaaaaaaaaa.json lacks {lacks}: it is incomplete.*compat run bct --profile cpu"):
        store.read_result("bct", "cpu", "aaaaaaaaaaaaaaaa")
