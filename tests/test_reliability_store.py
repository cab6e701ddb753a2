"""Results bound to their keys, writers that never cross their digests, files without a digest never used, and an
evaluator that refuses what float32 cannot rank (issue: reliability, second pass)."""

import errno
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import file_size_limit

from compat.errors import ConfigError, StorageError
from compat.evaluate import retrieval_metrics
from compat.store import DamagedArtefact, Store, read_verified


def _payload(key, n=0):
    return {
        "experiment": "bct",
        "profile": "cpu",
        "key": key,
        "seed": 0,
        "kind": "main",
        "rows": [],
        "config": {},
        "wall_seconds": {},
        "environment": {},
        "filler": "x" * (50_000 + n),
    }


def _writer(root, n, rounds):
    store = Store(root / "cache", root / "results")
    for i in range(rounds):
        store.write_result("bct", "cpu", "0123456789abcdef", _payload("0123456789abcdef", 1000 * n + i))


@pytest.mark.reliability(
    fault="several processes write the same result file at once",
    behaviour="the file and its sha256 sidecar always come from one writer: every read afterwards is intact",
)
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


@pytest.mark.reliability(
    fault="a result file copied under another key's name, with fresh sidecars",
    behaviour="refused as belonging to another key (its recorded key, experiment and profile are checked)",
)
def test_a_result_copied_under_another_key_is_refused(tmp_path):
    store = Store(tmp_path / "cache", tmp_path / "results")
    store.write_result("bct", "cpu", "aaaaaaaaaaaaaaaa", _payload("aaaaaaaaaaaaaaaa"))
    moved = json.loads(store.result_path("bct", "cpu", "aaaaaaaaaaaaaaaa").read_text())
    store.write_result("bct", "cpu", "bbbbbbbbbbbbbbbb", moved)  # the copy, with a sidecar made for it
    with pytest.raises(DamagedArtefact, match="belongs to another key"):
        store.read_result("bct", "cpu", "bbbbbbbbbbbbbbbb")
    assert store.read_result("bct", "cpu", "aaaaaaaaaaaaaaaa")["key"] == "aaaaaaaaaaaaaaaa"


@pytest.mark.reliability(
    fault="a stored model or embeddings file whose sha256 sidecar was deleted (and the file zeroed)",
    behaviour="never used: the model is refused as damaged, the embeddings are made again",
)
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
@pytest.mark.reliability(
    fault="embeddings scaled over many orders of magnitude (float32 distances overflow or underflow)",
    behaviour="the evaluator matches a float64 brute-force oracle, or refuses the input naming the scale",
)
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


@pytest.mark.reliability(
    fault="a results or cache folder that is a file, or cannot take a new file (read-only)",
    behaviour="refused before any model trains, naming the folder and the variable that moves it",
)
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


@pytest.mark.reliability(
    fault="code with uncommitted changes writing into another checkout's results/ through COMPAT_RESULTS",
    behaviour="refused like a write into its own results/: files under any checkout's results/ come from clean code",
)
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


@pytest.mark.parametrize(
    "change, defect",
    [
        ("rows", "no rows"),
        ("environment", "no environment"),
        ("rows-a-dict", "rows is a dict, not a list"),
        ("rows-of-numbers", "rows holds something other than records"),
        ("environment-a-list", "environment is a list, not a dict"),
    ],
)
@pytest.mark.reliability(
    fault="a result JSON missing fields, or holding them in the wrong type, with a valid sidecar",
    behaviour="refused as incomplete, naming the file, the defect and the command that rebuilds it (no KeyError in a table)",
)
def test_a_result_missing_fields_is_refused_as_incomplete(tmp_path, change, defect):
    store = Store(tmp_path / "cache", tmp_path / "results")
    payload = _payload("aaaaaaaaaaaaaaaa")
    changed = {"rows-a-dict": ("rows", {"top1": 1.0}), "rows-of-numbers": ("rows", [1.0]), "environment-a-list": ("environment", [])}
    if change in changed:
        payload[changed[change][0]] = changed[change][1]
    else:
        del payload[change]
    store.write_result("bct", "cpu", "aaaaaaaaaaaaaaaa", payload)
    with pytest.raises(DamagedArtefact, match=rf"aaaaaaaaaaaaaaaa.json is incomplete \({defect}\): delete it.*compat run bct --profile cpu"):
        store.read_result("bct", "cpu", "aaaaaaaaaaaaaaaa")


def _full_disk(monkeypatch, when=lambda path: True):
    """Every write of a file for which ``when(path)`` holds fails as on a full disk."""
    write_bytes = Path.write_bytes

    def refuse(self, data):
        if when(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)


@pytest.mark.reliability(
    fault="a file-size limit (`ulimit -f`) reached while a result, model or embedding file is written",
    behaviour="one error naming the file and `ulimit -f` (no raw OSError); the previous file is kept whole, no partial file is left",
)
def test_a_file_size_limit_is_one_clear_error_and_keeps_the_previous_file(tmp_path):
    store = Store(tmp_path / "cache", tmp_path / "results")
    key = "aaaaaaaaaaaaaaaa"
    store.write_result("bct", "cpu", key, _payload(key))
    with (
        file_size_limit(80_000),
        pytest.raises(
            StorageError, match=rf"cannot write .*{key}.json \(File too large\): raise the file-size limit .*previous file, if any, is kept whole"
        ),
    ):
        store.write_result("bct", "cpu", key, {**_payload(key, n=100_000), "seed": 1})
    assert store.read_result("bct", "cpu", key)["seed"] == 0  # the previous file, whole and verified
    assert sorted(p.name for p in store.result_path("bct", "cpu", key).parent.iterdir()) == [f"{key}.json", f"{key}.json.sha256"]


@pytest.mark.reliability(
    fault="a full disk met by a file's digest, after the file itself was written",
    behaviour="neither the file nor a stale digest is left (a file without its own digest is never used); one error naming the file",
)
def test_a_digest_that_cannot_be_written_takes_its_file_with_it(tmp_path, monkeypatch):
    store = Store(tmp_path / "cache", tmp_path / "results")
    key = "bbbbbbbbbbbbbbbb"
    store.write_result("bct", "cpu", key, _payload(key))
    _full_disk(monkeypatch, when=lambda path: ".sha256" in path.name)
    with pytest.raises(StorageError, match=f"cannot write .*{key}.json .*the new file was removed with it"):
        store.write_result("bct", "cpu", key, {**_payload(key), "seed": 1})
    assert list(store.result_path("bct", "cpu", key).parent.iterdir()) == []
    assert store.read_result("bct", "cpu", key) is None  # so the next run writes it again


@pytest.mark.parametrize("entry", ["a folder named like a result", "a note", "a model without its record"])
@pytest.mark.reliability(
    fault="odd entries in the results folder (a folder named *.json, a file not named by a key, a model record lacking fields)",
    behaviour="the inventory names the entry and what to do (it raised AttributeError, DamagedArtefact about a digest, or KeyError)",
)
def test_the_inventory_names_odd_entries_in_the_results_folder(tmp_path, entry):
    from compat.results import inventory

    store = Store(tmp_path / "cache", tmp_path / "results")
    key = "cccccccccccccccc"
    folder = store.result_path("bct", "cpu", key).parent
    record = {"key": "m" * 16, "trained_at_revision": "abc", "train_seconds": 1.0, "device": "cpu", "precision": "fp32"}
    store.write_result("bct", "cpu", key, {**_payload(key), "models": {"old": record}})
    assert len(inventory("cpu", store)[1]) == 1
    if entry == "a folder named like a result":
        (folder / "dddddddddddddddd.json").mkdir()
        expected = "dddddddddddddddd.json is not a result file .*move it out of"
    elif entry == "a note":
        (folder / "notes.json").write_text("{}")
        expected = "notes.json is not a result file .*named by their 16-hex-digit key"
    else:
        del record["device"]
        store.write_result("bct", "cpu", key, {**_payload(key), "models": {"old": record}})
        expected = f"{key}.json: model 'old' lacks device: the file is incomplete; delete it and rerun `python -m compat run bct"
    with pytest.raises((ConfigError, DamagedArtefact), match=expected):
        inventory("cpu", store)


@pytest.mark.reliability(
    fault="a per-query file damaged after a process has read it once",
    behaviour="the next read checks it again and refuses it (the decoded arrays are reused only while the file is unchanged)",
)
def test_per_query_arrays_are_decoded_once_and_a_changed_file_is_read_again(tmp_path, monkeypatch):
    store = Store(tmp_path / "cache", tmp_path / "results")
    key = "eeeeeeeeeeeeeeee"
    store.write_per_query("bct", "cpu", key, {"l2|old/old|rank": np.arange(5)})
    loads = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    first = store.read_per_query("bct", "cpu", key)
    assert store.read_per_query("bct", "cpu", key) is first and len(loads) == 1  # one decode for every reader
    with pytest.raises((TypeError, ValueError)):
        first["l2|old/old|rank"][0] = 7  # shared read-only
    path = store.per_query_path("bct", "cpu", key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(DamagedArtefact, match="does not match the sha256"):
        store.read_per_query("bct", "cpu", key)
