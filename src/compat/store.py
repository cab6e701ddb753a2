"""Content-addressed results store: every artefact is keyed by the full configuration that makes it.

* Trained models and embeddings are cached under ``.cache/`` (git-ignored): the same old model
  serves the BCT, FCT and BiCT chapters when their configs agree, and a changed parameter
  retrains only what depends on it (a model's key includes its parent's key).
* Each finished evaluation writes a small JSON result file under ``results/`` (committed):
  metrics, config, git revision, device, precision, library versions, wall times.

Writes go to a temporary file renamed into place; a per-key file lock makes two runs of the
same key train once and never corrupt it. Models load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from .distributed import check_writer
from .errors import CompatError, ConfigError, storage_error
from .paths import cache_dir, check_writable_folder, project_root, results_dir
from .provenance import git_revision

STORE_VERSION = 3  # bump when a change to the code invalidates stored artefacts (2: old/new init seeds differ; 3: faithful BCT/L2 losses)


# field metadata of an option added after results were committed: left out of keys while at its default,
# so adding an option keeps every stored artefact and committed result that never used it
ADDED_OPTION = {"omit_from_key_at_default": True}


def _in_key(obj, f: dataclasses.Field) -> bool:
    return not (f.metadata.get("omit_from_key_at_default") and getattr(obj, f.name) == f.default)


def canonical(obj) -> object:
    """A JSON-ready form of (nested) dataclasses, tuples and plain values, stable across runs; an object with a
    ``key_form()`` (a method's options) is keyed by the form it returns."""
    if hasattr(obj, "key_form") and not isinstance(obj, type):
        return canonical(obj.key_form())
    if dataclasses.is_dataclass(obj):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj) if _in_key(obj, f)}
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def config_key(obj) -> str:
    """16 hex digits of sha256 over the canonical JSON of ``obj`` and the store version."""
    text = json.dumps({"store_version": STORE_VERSION, "config": canonical(obj)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _replace(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` (a temporary file renamed over it, so never half of it); raw OSError on failure."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (every file the package writes comes
    here; in a multi-process run only rank 0 may). A full disk, a file-size limit or a refusing folder is one
    :class:`StorageError` naming the file and what to do; the previous file, if any, is kept whole."""
    check_writer(path)
    try:
        _replace(path, data)
    except OSError as exc:
        raise storage_error(path, exc, "the previous file, if any, is kept whole and no partial file was left") from None


class DamagedArtefact(CompatError):
    """A stored file does not match the digest recorded when it was written."""


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


@contextmanager
def _folder_lock(folder: Path, exclusive: bool) -> Iterator[None]:
    """An advisory lock on a folder: a writer holds it exclusively while it replaces a file and its digest, readers
    share it, so a reader never pairs one writer's file with another writer's digest."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_verified(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and its sha256 (of these very bytes) beside it (``path.sha256``), both atomically
    and together under the folder's lock, so that concurrent writers of one file never cross their digests. If
    the digest cannot be written, the new file goes too: a file without its own digest is never left behind."""
    check_writer(path)
    kept = "the previous file, if any, is kept whole and no partial file was left"
    try:
        with _folder_lock(path.parent, exclusive=True):
            _replace(path, data)
            kept = "the new file was removed with it, since a file without its own digest is never left behind"
            try:
                _replace(_sidecar(path), (hashlib.sha256(data).hexdigest() + "\n").encode())
            except OSError:
                path.unlink(missing_ok=True)
                _sidecar(path).unlink(missing_ok=True)  # the previous file's digest, now of nothing
                raise
    except OSError as exc:
        raise storage_error(path, exc, kept) from None


def read_verified(path: Path) -> bytes:
    """The bytes of ``path``, read together with its recorded sha256 and checked against it. Raise
    :class:`DamagedArtefact` naming the file if they differ or no digest was recorded (a file without one
    cannot be trusted, so it is never used)."""
    with _folder_lock(path.parent, exclusive=False):
        recorded = _sidecar(path)
        if not recorded.is_file():
            raise DamagedArtefact(f"{path} has no recorded sha256 ({recorded.name}), so its content cannot be trusted")
        digest, data = recorded.read_text().strip(), path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise DamagedArtefact(f"{path} does not match the sha256 recorded when it was written: it is damaged")
    return data


def write_torch(path: Path, obj) -> None:
    """``torch.save`` of ``obj`` to ``path``, atomically, with its digest."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_verified(path, buffer.getvalue())


def read_torch(path: Path, map_location="cpu"):
    """``torch.load`` (weights only) of a file written by :func:`write_torch`, after checking its digest."""
    data = read_verified(path)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # matches its digest but cannot be read: written by something else
        raise DamagedArtefact(f"{path} cannot be read ({type(exc).__name__}: {exc}): it is damaged") from None


def write_json(path: Path, payload: dict) -> None:
    write_atomic(path, (json.dumps(payload, indent=1, sort_keys=False) + "\n").encode())


def is_checkout_results(folder: Path) -> bool:
    """Whether ``folder`` is the committed ``results/`` of a checkout of this project (a git work tree's)."""
    folder = Path(folder).resolve()
    return folder == (project_root() / "results").resolve() or (
        folder.name == "results" and (folder.parent / ".git").exists() and (folder.parent / "pyproject.toml").is_file()
    )


@lru_cache(maxsize=16)  # the files of a chapter's seeds and ablation, and a few more
def _decoded_per_query(path: Path, size: int, mtime_ns: int) -> Mapping[str, np.ndarray]:
    with np.load(io.BytesIO(read_verified(path)), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for array in arrays.values():
        array.flags.writeable = False  # shared by every reader of this process
    return MappingProxyType(arrays)


RESULT_FIELDS = {
    "experiment": str,
    "profile": str,
    "kind": str,
    "key": str,
    "rows": list,
    "config": dict,
    "wall_seconds": dict,
    "environment": dict,
}  # what every kind of result file holds
KEY_PATTERN = re.compile(r"[0-9a-f]{16}")  # what config_key returns: the name of every stored file


def result_defects(payload: dict) -> list[str]:
    """What a result payload lacks or holds of the wrong type (empty when it is whole)."""
    defects = [
        f"no {name}" if name not in payload else f"{name} is a {type(payload[name]).__name__}, not a {kind.__name__}"
        for name, kind in RESULT_FIELDS.items()
        if not isinstance(payload.get(name), kind)
    ]
    if isinstance(payload.get("rows"), list) and not all(isinstance(row, dict) for row in payload["rows"]):
        defects.append("rows holds something other than records")
    return defects


class Store:
    """Models and embeddings under ``cache_root``, result files under ``results_root``."""

    def __init__(self, cache_root: Path | None = None, results_root: Path | None = None) -> None:
        self.cache = Path(cache_root) if cache_root else cache_dir()
        self.results = Path(results_root) if results_root else results_dir()

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key`` (other processes wait)."""
        path = self.cache / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def model_dir(self, key: str) -> Path:
        return self.cache / "models" / key

    def has_model(self, key: str) -> bool:
        return (self.model_dir(key) / "meta.json").is_file()  # written last: the done-marker

    def save_model(self, key: str, model: torch.nn.Module, meta: dict) -> None:
        folder = self.model_dir(key)
        write_torch(folder / "model.pt", model.state_dict())
        write_json(folder / "meta.json", meta)  # last: the done-marker

    def model_meta(self, key: str) -> dict:
        """The stored metadata of model ``key``: spec, classes, training log, environment."""
        return json.loads((self.model_dir(key) / "meta.json").read_text())

    def load_model(self, key: str, model: torch.nn.Module) -> dict:
        """Load the stored weights of ``key`` into ``model``; return the stored metadata."""
        model.load_state_dict(read_torch(self.model_dir(key) / "model.pt"))
        return self.model_meta(key)

    def remove_model(self, key: str) -> None:
        """Forget model ``key`` (a damaged one, before it is rebuilt)."""
        shutil.rmtree(self.model_dir(key), ignore_errors=True)

    def embeddings_path(self, key: str) -> Path:
        return self.cache / "embeddings" / f"{key}.npy"

    def save_embeddings(self, key: str, array: np.ndarray) -> None:
        path = self.embeddings_path(key)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        write_verified(path, buffer.getvalue())

    def load_embeddings(self, key: str) -> np.ndarray | None:
        """The stored embeddings of ``key``, or None if absent; a damaged file is reported, removed and None
        returned, so that the caller embeds again."""
        path = self.embeddings_path(key)
        if not path.is_file():
            return None
        try:
            return np.load(io.BytesIO(read_verified(path)), allow_pickle=False)
        except (DamagedArtefact, ValueError, OSError) as exc:
            warnings.warn(f"{exc}; embedding again", stacklevel=2)
            path.unlink(missing_ok=True)
            return None

    def result_path(self, experiment: str, profile: str, key: str) -> Path:
        return self.results / experiment / profile / f"{key}.json"

    def read_result(self, experiment: str, profile: str, key: str) -> dict | None:
        """The result file of ``key``, or None if there is none. :class:`DamagedArtefact` (naming the file) if it
        or its per-query file does not match the sha256 recorded beside it, has none, or if the file is not the
        result of this key: its recorded key, experiment and profile must be the ones it is read under (a file
        copied under another key's name is refused, whatever its sidecar says)."""
        path = self.result_path(experiment, profile, key)
        if not path.is_file():
            return None
        per_query = self.per_query_path(experiment, profile, key)
        if per_query.is_file():
            read_verified(per_query)
        try:
            payload = json.loads(read_verified(path))
        except json.JSONDecodeError as exc:
            raise DamagedArtefact(f"{path} is not valid JSON ({exc}): it is damaged") from None
        recorded = {name: payload.get(name) if isinstance(payload, dict) else None for name in ("key", "experiment", "profile")}
        expected = {"key": key, "experiment": experiment, "profile": profile}
        if recorded != expected:
            raise DamagedArtefact(f"{path} records {recorded}, not the {expected} it is read under: it belongs to another key")
        if defects := result_defects(payload):
            raise DamagedArtefact(
                f"{path} is incomplete ({'; '.join(defects)}): delete it and rerun "
                f"`python -m compat run {experiment} --profile {profile}` to rebuild it"
            )
        return payload

    def check_result_writable(self) -> None:
        """What a run will write, checked before it trains: the results and cache folders are folders this process
        can write, and result files under any checkout's committed ``results/`` (this one's, or another's through
        ``COMPAT_RESULTS``) come only from clean code, so the revision they record is the code that made them;
        other folders (tests, CI) take any tree."""
        if is_checkout_results(self.results) and git_revision().endswith("-dirty"):
            raise ConfigError(
                f"the code has uncommitted changes ({git_revision()}) and {self.results} is a checkout's committed results "
                "folder: commit them (or run from a clean `git worktree`) before writing result files there, or set "
                "COMPAT_RESULTS to another folder"
            )
        for role, folder, variable in (("results", self.results, "COMPAT_RESULTS"), ("cache", self.cache, "COMPAT_CACHE")):
            check_writable_folder(role, folder, f"or set {variable} to one")

    def write_result(self, experiment: str, profile: str, key: str, payload: dict) -> Path:
        self.check_result_writable()
        path = self.result_path(experiment, profile, key)
        write_verified(path, (json.dumps(payload, indent=1, sort_keys=False) + "\n").encode())
        return path

    def per_query_path(self, experiment: str, profile: str, key: str) -> Path:
        return self.results / experiment / profile / f"{key}.npz"

    def write_per_query(self, experiment: str, profile: str, key: str, arrays: dict[str, np.ndarray]) -> Path:
        """Per-query results beside a result file: compressed numpy arrays, written atomically."""
        self.check_result_writable()
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path = self.per_query_path(experiment, profile, key)
        write_verified(path, buffer.getvalue())
        return path

    def read_per_query(self, experiment: str, profile: str, key: str) -> Mapping[str, np.ndarray]:
        """The per-query arrays beside a result file, digest checked. Decoded once per file version and process
        (a table reads every case of every seed's file): kept, read-only, while the file's size and mtime stay."""
        path = self.per_query_path(experiment, profile, key)
        if not path.is_file():
            raise ConfigError(f"per-query results {path} are missing: rerun the experiment to write them")
        stat = path.stat()
        return _decoded_per_query(path.resolve(), stat.st_size, stat.st_mtime_ns)
