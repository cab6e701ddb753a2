"""Guards that fail closed: bad environment values, empty paths, degenerate evaluator input and
benchmark arguments are refused with one clear error before any work."""

from pathlib import Path

import numpy as np
import pytest

from compat.cli import main
from compat.errors import ConfigError, StorageError
from compat.evaluate import retrieval_metrics


@pytest.mark.parametrize("value", ["NEVER", "no", "", "0"])
@pytest.mark.reliability(
    fault="COMPAT_TRAIN set to an undocumented value", behaviour="refused with the allowed values (the guard cannot be turned off by a typo)"
)
def test_compat_train_accepts_only_its_documented_values(value, monkeypatch):
    from compat.artefacts import training_policy

    monkeypatch.setenv("COMPAT_TRAIN", value)
    with pytest.raises(ConfigError, match=f"unknown COMPAT_TRAIN {value!r}; allowed: 'allow', 'never'"):
        training_policy()


@pytest.mark.parametrize("name", ["COMPAT_CACHE", "COMPAT_RESULTS", "COMPAT_DATA_DIR"])
@pytest.mark.reliability(
    fault="COMPAT_CACHE, COMPAT_RESULTS or COMPAT_DATA_DIR set but empty", behaviour="refused; nothing is written into the current folder"
)
def test_an_empty_path_variable_is_an_error_not_the_current_directory(name, monkeypatch):
    from compat import paths

    monkeypatch.setenv(name, "  ")
    getter = {"COMPAT_CACHE": paths.cache_dir, "COMPAT_RESULTS": paths.results_dir, "COMPAT_DATA_DIR": paths.data_cache_dir}[name]
    with pytest.raises(ConfigError, match=f"{name} is set but empty"):
        getter()


@pytest.mark.reliability(
    fault="the mirror (--mirror, COMPAT_TINY_IMAGENET_MIRROR) or COMPAT_HOME set but empty",
    behaviour="refused by name before any work: never the shared mirror, a download or the current folder in its place",
)
def test_an_empty_mirror_or_home_is_an_error(tmp_path, monkeypatch):
    from compat import paths
    from compat.cli import main
    from compat.data.sources import MIRROR_ENV, resolve_source

    with pytest.raises(ConfigError, match=r"the mirror argument \(--mirror\) is set but empty"):
        resolve_source("", tmp_path)
    monkeypatch.setenv(MIRROR_ENV, " ")
    with pytest.raises(ConfigError, match=f"{MIRROR_ENV} is set but empty"):
        resolve_source(None, tmp_path)
    assert main(["data", "prepare", "--mirror", ""]) == 2  # the command line says so too, as an error
    monkeypatch.setenv("COMPAT_HOME", "")
    with pytest.raises(ConfigError, match="COMPAT_HOME is set but empty"):
        paths.project_root()
    assert not any(tmp_path.iterdir())  # nothing downloaded or written


@pytest.mark.reliability(fault="leave-one-out retrieval on a single item", behaviour="one error saying two items are needed")
def test_the_evaluator_refuses_a_single_item():
    with pytest.raises(ConfigError, match="at least two items, got 1"):
        retrieval_metrics(np.ones((1, 4)), np.ones((1, 4)), np.array([0]))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "evaluate", "--repeats", "0"], "--repeats=0 is out of range"),
        (["bench", "evaluate", "--n", "1"], "--n=1 is out of range"),
        (["bench", "evaluate", "--n", "399"], "--n=399 is out of range; allowed: [400, 30000]"),  # a class without a pair
        (["bench", "evaluate", "--n", "100000"], "--n=100000 is out of range"),  # the n x n ranking would not fit
        (["bench", "train", "--steps", "0"], "--steps=0 is out of range"),
        (["bench", "profile", "--steps", "0"], "--steps=0 is out of range"),
        (["bench", "levers", "--steps", "1"], "--steps=1 is out of range; allowed: [2, 100000]"),  # the conventional run needs a step
        (["bench", "profile", "--top", "0"], "--top=0 is out of range"),
        (["bench", "gallery", "--sizes", "1000", "0"], "--sizes item=0 is out of range"),
    ],
)
@pytest.mark.reliability(
    fault="benchmark arguments that measure nothing or cannot run (0 repeats, 0 steps, an evaluator size with a class of one or a ranking beyond memory)",
    behaviour="refused before any work",
)
def test_benchmarks_refuse_arguments_that_measure_nothing(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def _zero_bytes(path, at=200, count=8):
    data = bytearray(path.read_bytes())
    data[at : at + count] = bytes(count)
    path.write_bytes(bytes(data))


def _tiny_spec():
    from compat.artefacts import ModelSpec, SubsetSpec
    from compat.config import get_profile

    profile = get_profile(
        "smoke",
        {
            "data.synthetic_classes": "4",
            "data.synthetic_train_per_class": "8",
            "data.synthetic_val_per_class": "3",
            "model.width": "2",
            "model.embedding_dim": "8",
            "old_train.epochs": "2",
            "old_train.batch_size": "8",
            "old_train.warmup_epochs": "0",
        },
    )
    return ModelSpec(profile.data, SubsetSpec("extended-class", 0.5, "old"), profile.model, profile.old_train, 0)


@pytest.mark.reliability(
    fault="a stored model with changed bytes", behaviour="detected by its sha256, named, rebuilt (refused under COMPAT_TRAIN=never)"
)
def test_a_damaged_model_is_named_and_rebuilt_or_refused(tmp_path, monkeypatch):
    import torch

    from compat.artefacts import get_model
    from compat.store import DamagedArtefact, Store

    store, spec = Store(tmp_path / "c", tmp_path / "r"), _tiny_spec()
    trained = get_model(spec, store, progress=False)
    path = store.model_dir(spec.key) / "model.pt"
    _zero_bytes(path, at=len(path.read_bytes()) - 64)  # inside the tensor data: torch.load alone would not notice
    with pytest.raises(DamagedArtefact, match=str(path)):
        store.load_model(spec.key, trained)
    monkeypatch.setenv("COMPAT_TRAIN", "never")
    with pytest.raises(ConfigError, match="is damaged .* COMPAT_TRAIN=never forbids"):
        get_model(spec, store, progress=False)
    monkeypatch.setenv("COMPAT_TRAIN", "allow")
    with pytest.warns(UserWarning, match="training it again"):
        rebuilt = get_model(spec, store, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), rebuilt.state_dict().values()))  # same seed


@pytest.mark.reliability(fault="stored embeddings with changed bytes", behaviour="detected by their sha256, removed, embedded again")
def test_damaged_embeddings_are_embedded_again(tmp_path):
    from compat.store import Store

    store = Store(tmp_path / "c", tmp_path / "r")
    store.save_embeddings("k", np.arange(40, dtype=np.float32).reshape(10, 4))
    _zero_bytes(store.embeddings_path("k"), at=140)
    with pytest.warns(UserWarning, match="k.npy does not match the sha256"):
        assert store.load_embeddings("k") is None
    assert not store.embeddings_path("k").exists()


@pytest.mark.reliability(fault="a damaged training checkpoint", behaviour="never resumed from; training starts afresh, said in a warning")
def test_a_damaged_checkpoint_means_a_fresh_start_said_in_a_warning(tmp_path):
    import torch

    from compat.artefacts import _build
    from compat.losses import CrossEntropy
    from compat.train import fit

    spec = _tiny_spec()
    data = spec.data.load()
    images, labels = data.train.images[:32], data.train.labels[:32] % 4

    def train(workdir):
        model = _build(spec, 4)
        fit(model, images, labels, spec.train, [CrossEntropy()], seed=0, workdir=workdir)
        return model

    clean = train(tmp_path / "clean")
    ckpt = tmp_path / "clean" / "checkpoint.pt"
    _zero_bytes(ckpt, at=len(ckpt.read_bytes()) - 64)
    with pytest.warns(UserWarning, match="is damaged .* training starts afresh"):
        again = train(tmp_path / "clean")
    assert all(torch.equal(a, b) for a, b in zip(clean.state_dict().values(), again.state_dict().values()))


def test_the_reliability_page_is_generated_from_these_tests():
    from compat.reliability import reliability_table

    table = reliability_table()
    assert len(table) >= 20 and (table["fault or bad input"].str.len() >= 10).all() and (table["cases"] >= 1).all()
    assert "tests/test_reliability.py::test_the_evaluator_refuses_a_single_item" in set(table["test"])


@pytest.mark.reliability(
    fault="the same configuration run with another CPU thread count (a CPU run's numbers depend on it)",
    behaviour="training pins the thread count of its config; another count is another key",
)
def test_the_thread_count_is_pinned_by_the_config_and_part_of_the_key(tmp_path):
    import dataclasses

    import torch

    from compat.artefacts import get_model
    from compat.store import Store

    spec = _tiny_spec()
    one_thread = dataclasses.replace(spec, train=dataclasses.replace(spec.train, threads=1))
    assert one_thread.key != spec.key
    seen, models, ambient = [], [], torch.get_num_threads()
    try:
        for run, threads in enumerate((1, 2)):  # the caller's thread count differs between the two runs
            torch.set_num_threads(threads)
            store = Store(tmp_path / f"c{run}", tmp_path / f"r{run}")
            models.append(get_model(spec, store, progress=False, on_epoch=lambda *a: seen.append(torch.get_num_threads()) or {}))
            assert torch.get_num_threads() == threads  # restored afterwards
    finally:
        torch.set_num_threads(ambient)
    assert set(seen) == {spec.train.threads}
    assert all(torch.equal(a, b) for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()))


def _written_result(tmp_path):
    from compat.store import Store

    store = Store(tmp_path / "c", tmp_path / "r")
    store.write_per_query("bct", "smoke", "k", {"top1": np.arange(6, dtype=np.float32)})
    store.write_result("bct", "smoke", "k", RESULT)
    return store


RESULT = {
    "experiment": "bct",
    "profile": "smoke",
    "key": "k",
    "kind": "main",
    "rows": [{"case": "old/old", "top1": 12.5}],
    "config": {},
    "wall_seconds": {},
    "environment": {},
}


@pytest.mark.parametrize("damage", ["result bytes", "per-query bytes", "no digest"])
@pytest.mark.reliability(
    fault="a result file or its per-query file with changed bytes, or without its recorded sha256",
    behaviour="named; the run makes it again (refused under COMPAT_TRAIN=never, with the path and how to restore a committed file)",
)
def test_a_damaged_result_file_is_named_and_made_again_or_refused(damage, tmp_path, monkeypatch):
    from compat.artefacts import read_intact_result
    from compat.store import DamagedArtefact

    store = _written_result(tmp_path)
    assert read_intact_result(store, "bct", "smoke", "k") == RESULT
    path = store.result_path("bct", "smoke", "k")
    if damage == "result bytes":
        path.write_text(path.read_text().replace("12.5", "13.5"))
    elif damage == "per-query bytes":
        path = store.per_query_path("bct", "smoke", "k")
        _zero_bytes(path, at=len(path.read_bytes()) // 2, count=4)
    else:
        path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(DamagedArtefact, match=str(path)):
        store.read_result("bct", "smoke", "k")
    monkeypatch.setenv("COMPAT_TRAIN", "never")
    with pytest.raises(ConfigError, match=f"{path}.*git checkout -- results/bct/smoke.*COMPAT_TRAIN=never forbids"):
        read_intact_result(store, "bct", "smoke", "k")
    monkeypatch.setenv("COMPAT_TRAIN", "allow")
    with pytest.warns(UserWarning, match="making it again"):
        assert read_intact_result(store, "bct", "smoke", "k") is None


@pytest.mark.reliability(
    fault="the disk fills up while a result file is written",
    behaviour="one StorageError naming the file and what to do (no raw OSError); the previous file and its digest stay intact, no temporary file is left",
)
def test_a_failed_write_leaves_the_previous_result_intact(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    store = _written_result(tmp_path)
    before = store.read_result("bct", "smoke", "k")
    real_write = Path.write_bytes

    def disk_full(self, data):
        real_write(self, data[: len(data) // 2])  # part of it lands, then the device is full
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(StorageError, match=r"cannot write .*k.json \(No space left on device\): free space on its disk"):
        store.write_result("bct", "smoke", "k", {**RESULT, "rows": [{"case": "old/old", "top1": 99.0}]})
    monkeypatch.undo()
    assert store.read_result("bct", "smoke", "k") == before  # digest checked on read
    assert sorted(p.name for p in store.result_path("bct", "smoke", "k").parent.iterdir()) == ["k.json", "k.json.sha256", "k.npz", "k.npz.sha256"]


@pytest.mark.reliability(
    fault="a chapter's own display parameter out of range (classes in the data chapter's grid)",
    behaviour="one error naming the parameter and its allowed range, from our check, not from matplotlib",
)
def test_the_data_chapter_checks_its_own_parameters(tmp_path):
    import papermill

    from compat.booktools import execute

    with pytest.raises(papermill.PapermillExecutionError, match=r"classes_shown=0 is out of range; allowed: \[1, 20\]"):
        execute(Path("notebooks/data_and_protocol.ipynb"), tmp_path / "data.ipynb", {"profile": "smoke", "classes_shown": 0})


@pytest.mark.reliability(
    fault="a copied checkout (cp -r) whose .venv still imports the original's src (editable install)",
    behaviour="its commands refuse to run the other checkout's code, and `make venv` rebuilds .venv for the copy",
)
def test_a_copied_checkout_runs_its_own_code_or_says_it_does_not(tmp_path, monkeypatch):
    import shutil
    import subprocess

    from compat.errors import ConfigError
    from compat.paths import check_own_checkout, project_root

    copy = tmp_path / "copy"
    (copy / "src" / "compat").mkdir(parents=True)
    (copy / "src" / "compat" / "__init__.py").write_text("")
    monkeypatch.delenv("COMPAT_HOME", raising=False)
    with pytest.raises(ConfigError, match=f"runs in the checkout {copy} but imports the code of {project_root()}.*make venv"):
        check_own_checkout(copy / "src")
    check_own_checkout(project_root() / "tests")  # the checkout this code belongs to
    check_own_checkout(tmp_path)  # outside any checkout: nothing to mix up
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(project_root() / name, copy / name)
    (copy / ".venv").mkdir()

    def plan(stamp: str) -> str:
        (copy / ".venv" / ".installed").write_text(stamp + "\n")
        return subprocess.run(["make", "-n", "-C", str(copy), "venv"], capture_output=True, text=True, check=True).stdout

    assert "-m venv" in plan(str(project_root()))  # made for the original: rebuilt here
    assert "Nothing to be done" in plan(str(copy))  # made for this checkout: kept


@pytest.mark.reliability(
    fault="synthetic sizes too large for memory; an image size the chosen backbone cannot take",
    behaviour="one ConfigError naming the settings and the limit, before any work (no MemoryError, no RuntimeError mid-run)",
)
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.synthetic_classes": 100_000}, "synthetic_classes=100000 is out of range"),
        ({"data.synthetic_train_per_class": 1_000_000}, "synthetic_train_per_class=1000000 is out of range"),
        ({"data.synthetic_classes": 5000, "data.synthetic_train_per_class": 20_000, "data.image_size": 64}, r"GiB in memory \(at most 4 GiB\)"),
        ({"data.image_size": 8}, "data.image_size=8 is too small for backbone 'airnet': it takes images of at least 9 pixels"),
    ],
)
def test_sizes_out_of_reach_are_refused_before_any_work(overrides, message):
    from compat.config import get_profile

    with pytest.raises(ConfigError, match=message):
        get_profile("smoke", overrides)


def test_every_backbone_takes_its_smallest_stated_image_size_and_no_smaller():
    import torch

    from compat.models import BACKBONES, MIN_IMAGE_SIZES, EmbeddingModel, ModelConfig

    for name in BACKBONES:
        model = EmbeddingModel(ModelConfig(name, width=2, embedding_dim=4), 3).eval()
        smallest = MIN_IMAGE_SIZES[name]
        with torch.no_grad():
            assert model(torch.zeros(2, 3, smallest, smallest))[0].shape == (2, 4)
            if smallest > 1:  # the stated size is the smallest, not merely one that works
                with pytest.raises(RuntimeError):
                    model(torch.zeros(2, 3, smallest - 1, smallest - 1))
    assert MIN_IMAGE_SIZES["airnet"] == 9  # the case the check exists for: 8 px is inside data.image_size's range


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.ipynb", None, "missing.ipynb is not a notebook file (.ipynb): it does not exist"),
        ("chapter.txt", "hello", "chapter.txt is not a notebook file (.ipynb)"),
        ("not-json.ipynb", "hello", "not-json.ipynb is not a valid notebook (Notebook does not appear to be JSON"),
        ("no-cells.ipynb", "{}", "no-cells.ipynb is not a valid notebook"),
    ],
)
@pytest.mark.reliability(
    fault="book execute on a missing, non-notebook or damaged path",
    behaviour="one error naming the path and what a chapter is (it raised FileNotFoundError, NotJSONError or ValidationError)",
)
def test_book_execute_refuses_what_is_not_a_notebook(tmp_path, name, content, message, capsys):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert main(["book", "execute", str(path), "--profile", "smoke", "--prepare-only", "--output", str(tmp_path / "out.ipynb")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.ipynb").exists()


@pytest.mark.reliability(
    fault="book execute into an output folder that cannot be written",
    behaviour="refused naming the folder before a kernel starts; nothing is left behind",
)
def test_book_execute_refuses_an_output_folder_it_cannot_write(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    notebook = Path(__file__).parents[1] / "notebooks" / "rerun.ipynb"
    assert main(["book", "execute", str(notebook), "--profile", "smoke", "--prepare-only", "--output", str(blocker / "out.ipynb")]) == 2
    assert f"the output folder {blocker} cannot be written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.reliability(
    fault="a full disk met by a writer outside the store (papermill writing a chapter)",
    behaviour="one error naming the file and what to do, exit status 2 (no traceback); other OS errors still raise",
)
def test_the_command_line_names_a_full_disk_met_anywhere(monkeypatch, capsys):
    import errno
    import os

    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "book/chapter.ipynb")

    monkeypatch.setattr("compat.cli._book_execute", full)
    notebook = str(Path(__file__).parents[1] / "notebooks" / "rerun.ipynb")
    assert main(["book", "execute", notebook, "--profile", "smoke"]) == 2
    assert "cannot write book/chapter.ipynb (No space left on device): free space on its disk" in capsys.readouterr().err
    monkeypatch.setattr("compat.cli._book_execute", lambda args: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        main(["book", "execute", notebook, "--profile", "smoke"])
