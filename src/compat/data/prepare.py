"""One-time preparation of Tiny-ImageNet-200 into memory-mappable uint8 arrays.

The JPEGs are decoded once into ``{train,val}_64.npy`` and downsampled with antialiasing
into ``{train,val}_32.npy`` (the CPU profile's CIFAR-sized stand-in). Everything is
written into a temporary folder that is renamed into place only when complete, with
``manifest.json`` as the done-marker: an interrupted or failed preparation never
leaves a cache that looks valid. The manifest records every file's size and sha256; a
file whose bytes changed is found by :func:`damaged_files` when it is loaded.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..digests import matches_digest, sha256_of
from ..errors import DataError, storage_error
from ..paths import check_writable_folder
from .sources import Source

CACHE_VERSION = 2  # 2: classes in sorted WordNet-id order (label = sorted index)
NATIVE_SIZE = 64
PREPARED_SIZES = (64, 32)
ROOT = "tiny-imagenet-200/"
_TRAIN_RE = re.compile(r"^tiny-imagenet-200/train/(n\d+)/images/n\d+_(\d+)\.JPEG$")
_VAL_RE = re.compile(r"^tiny-imagenet-200/val/images/(val_\d+\.JPEG)$")


def downsample(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """Antialiased bilinear resize of N x H x W x 3 uint8 images to size x size (torchvision's Resize)."""
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk])).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


class _Archives:
    """The union of members of several zip files, read by member name."""

    def __init__(self, paths: tuple[Path, ...]) -> None:
        self._zips = []
        self.where: dict[str, zipfile.ZipFile] = {}
        for path in paths:
            try:
                zf = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"{path} is not a readable zip file ({exc}); replace it from the source") from exc
            self._zips.append(zf)
            for name in zf.namelist():
                self.where[name] = zf

    def read(self, name: str) -> bytes:
        if name not in self.where:
            raise DataError(f"the data source lacks {name}: the mirror or archive is incomplete")
        try:
            return self.where[name].read(name)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"cannot read {name} ({exc}): the archive is corrupt; replace it") from exc

    def text(self, name: str) -> str:
        return self.read(name).decode("utf-8")

    def close(self) -> None:
        for zf in self._zips:
            zf.close()


def _decode(data: bytes, name: str) -> np.ndarray:
    try:
        img = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as exc:
        raise DataError(f"cannot decode image {name} ({exc}): the source is corrupt") from exc
    if img.size != (NATIVE_SIZE, NATIVE_SIZE):
        raise DataError(f"image {name} is {img.size}, expected {NATIVE_SIZE}x{NATIVE_SIZE}")
    return np.asarray(img)


def _read_classes(arch: _Archives) -> tuple[list[str], list[str]]:
    # labels follow sorted WordNet ids (wnids.txt itself is unordered): "the first K classes" is then
    # well defined and matches the mirror's shard order.
    wnids = sorted(w.strip() for w in arch.text(ROOT + "wnids.txt").splitlines() if w.strip())
    words = dict(line.split("\t", 1) for line in arch.text(ROOT + "words.txt").splitlines() if "\t" in line)
    return wnids, [words.get(w, w).strip() for w in wnids]


def _list_images(arch: _Archives, wnids: list[str]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(member name, label) for train (sorted by class, then image number) and val (sorted by number)."""
    index = {w: i for i, w in enumerate(wnids)}
    train = []
    for name in arch.where:
        m = _TRAIN_RE.match(name)
        if m and m.group(1) in index:  # classes outside wnids.txt (e.g. extra folders of a copy) are skipped
            train.append((index[m.group(1)], int(m.group(2)), name))
    train.sort()
    empty = sorted(set(index) - {wnids[c] for c, _, _ in train})
    if empty:
        raise DataError(f"the data source has no training images for classes {empty[:5]} ...: it is incomplete")
    val = []
    for line in arch.text(ROOT + "val/val_annotations.txt").splitlines():
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            continue
        val.append((int(fields[0][4:-5]), f"{ROOT}val/images/{fields[0]}", index[fields[1]]))
    val.sort()
    if not val:
        raise DataError("val_annotations.txt lists no images of the known classes")
    return [(n, c) for c, _, n in train], [(n, c) for _, n, c in val]


def _decode_all(arch: _Archives, items: list[tuple[str, int]], out: Path, desc: str) -> np.ndarray:
    images = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=(len(items), NATIVE_SIZE, NATIVE_SIZE, 3))
    for i, (name, _) in enumerate(tqdm(items, desc=desc, unit="img", mininterval=2, disable=None)):
        images[i] = _decode(arch.read(name), name)
    images.flush()
    return images


def _check_free_space(cache_root: Path, images: int) -> None:
    """Refuse, before decoding, a disk without room for every prepared size of ``images`` images: a memory-mapped
    file on a full disk kills the process (SIGBUS) instead of raising."""
    needed = images * sum(3 * size * size for size in PREPARED_SIZES) + images * 8 + 2**20
    free = shutil.disk_usage(cache_root).free
    if free < needed:
        raise DataError(
            f"the data cache folder {cache_root} has {free / 2**30:.2f} GiB free and preparing "
            f"{images} images needs {needed / 2**30:.2f} GiB: free space there, or set COMPAT_DATA_DIR "
            "to a folder with room"
        )


def _save_npy(path: Path, array: np.ndarray) -> None:
    np.save(path, array, allow_pickle=False)


def is_complete(folder: Path) -> bool:
    """True if ``folder`` holds a finished cache of this version: manifest present with every file's
    sha256, every file at its size (a manifest without digests is from before they were recorded)."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        meta = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    if meta.get("cache_version") != CACHE_VERSION or set(meta.get("sha256", ())) != set(meta["files"]):
        return False
    return all((folder / f).is_file() and (folder / f).stat().st_size == s for f, s in meta["files"].items())


def damaged_files(folder: Path, names: list[str]) -> list[Path]:
    """The files among ``names`` whose sha256 differs from the manifest's (each file state hashed once a process)."""
    digests = json.loads((folder / "manifest.json").read_text())["sha256"]
    return [folder / name for name in names if not matches_digest(folder / name, digests.get(name))]


def _remove_stale_temps(parent: Path, stem: str) -> None:
    """Delete temporary folders of earlier preparations whose process is gone."""
    for tmp in parent.glob(f".{stem}.tmp-*"):
        pid = int(tmp.name.rsplit("-", 1)[1]) if tmp.name.rsplit("-", 1)[1].isdigit() else -1
        try:
            os.kill(pid, 0)
        except (OSError, ValueError):
            shutil.rmtree(tmp, ignore_errors=True)


def prepare_tiny_imagenet(source: Source, cache_root: Path, *, on_step: Callable[[str], None] | None = None) -> Path:
    """Decode ``source`` into ``cache_root/tiny-imagenet-200`` (if not already there) and return that folder.

    :param source: verified archives, from :func:`compat.data.sources.resolve_source`.
    :param cache_root: the data cache folder.
    :param on_step: called with a step name before each phase (tests use it to interrupt).
    """
    final = cache_root / "tiny-imagenet-200"
    if is_complete(final):
        return final
    check_writable_folder("data cache", cache_root, "or set COMPAT_DATA_DIR to one")
    cache_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(cache_root, final.name)
    tmp = cache_root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    step = on_step or (lambda name: None)
    started = time.perf_counter()
    arch = None
    try:
        arch = _Archives(source.archives)
        step("classes")
        wnids, names = _read_classes(arch)
        train_items, val_items = _list_images(arch, wnids)
        _check_free_space(cache_root, len(train_items) + len(val_items))
        for part, items in (("train", train_items), ("val", val_items)):
            step(f"decode-{part}")
            native = _decode_all(arch, items, tmp / f"{part}_{NATIVE_SIZE}.npy", f"decode {part}")
            for size in PREPARED_SIZES:
                if size != NATIVE_SIZE:
                    step(f"downsample-{part}-{size}")
                    _save_npy(tmp / f"{part}_{size}.npy", downsample(native, size))
            _save_npy(tmp / f"{part}_labels.npy", np.array([c for _, c in items], dtype=np.int64))
            del native
        (tmp / "classes.json").write_text(json.dumps({"class_ids": wnids, "class_names": names}, indent=1))
        step("manifest")
        manifest = {
            "cache_version": CACHE_VERSION,
            "dataset": "tiny-imagenet-200",
            "source": {"kind": source.kind, "location": str(source.location), "checksums": source.checksums},
            "counts": {"classes": len(wnids), "train": len(train_items), "val": len(val_items)},
            "sizes": list(PREPARED_SIZES),
            "prepare_seconds": round(time.perf_counter() - started, 1),
            "files": {p.name: p.stat().st_size for p in sorted(tmp.iterdir())},
            "sha256": {p.name: sha256_of(p) for p in sorted(tmp.iterdir())},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if final.exists() and not is_complete(final):
            shutil.rmtree(final)  # a folder without a valid manifest is never trusted
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete(final):  # someone else finished first only if theirs is complete
                raise
    except OSError as exc:  # a full disk or a file-size limit while writing; a memory map that cannot grow
        raise DataError(str(storage_error(exc.filename or tmp, exc, "no partial data cache was left"))) from None
    finally:
        if arch is not None:
            arch.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return final
