"""Where Tiny-ImageNet-200 comes from: a local mirror of checksummed zip shards, or the official archive.

Order of preference: an explicit mirror folder (argument or ``COMPAT_TINY_IMAGENET_MIRROR``),
the shared mirror beside the checkout (``../shared/data/tiny-imagenet-200``), then the
official archive downloaded over the internet and checked against its published MD5.
Every failure is one :class:`DataError` that says what is wrong and how to fix it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import ConfigError, DataError
from ..paths import project_root

MIRROR_ENV = "COMPAT_TINY_IMAGENET_MIRROR"
OFFICIAL_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
OFFICIAL_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"  # published with the archive; used by many loaders
CHECKSUM_FILE = "SHA256SUMS"


@dataclass(frozen=True)
class Source:
    """Zip archives that together hold the ``tiny-imagenet-200/`` folder layout.

    :param kind: ``mirror`` (checksummed shards) or ``official`` (the single course archive).
    :param location: the mirror folder or the downloaded archive.
    :param archives: the zip files to read.
    :param checksums: file name -> verified digest (``sha256:...`` or ``md5:...``), for provenance.
    """

    kind: str
    location: Path
    archives: tuple[Path, ...]
    checksums: dict[str, str]


def default_mirror() -> Path:
    """The shared mirror beside the checkout, as CI and the developers' machines have it."""
    return project_root().parent / "shared" / "data" / "tiny-imagenet-200"


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def read_checksum_file(folder: Path) -> dict[str, str]:
    """``SHA256SUMS`` as {file name: sha256 hex}; a missing or malformed file is a DataError."""
    path = folder / CHECKSUM_FILE
    if not path.is_file():
        raise DataError(
            f"mirror folder {folder} has no {CHECKSUM_FILE}; a Tiny-ImageNet mirror holds the zip shards "
            f"and their {CHECKSUM_FILE} (see its README.txt)"
        )
    sums: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataError(f"{path}:{n} is not a 'sha256  filename' line: {line!r}")
        sums[parts[1].lstrip("*")] = parts[0].lower()
    if not sums:
        raise DataError(f"{path} lists no files")
    return sums


def verify_mirror(folder: Path) -> Source:
    """Check every shard listed in ``SHA256SUMS`` exists and matches; return it as a :class:`Source`."""
    sums = read_checksum_file(folder)
    checked: dict[str, str] = {}
    for name, expected in tqdm(sorted(sums.items()), desc="verify mirror", unit="shard", disable=None):
        path = folder / name
        if not path.is_file():
            raise DataError(f"mirror {folder} lacks {name}, listed in {CHECKSUM_FILE}: copy the whole mirror again")
        actual = file_digest(path, "sha256")
        if actual != expected:
            raise DataError(
                f"corrupt shard {path}: sha256 {actual} but {CHECKSUM_FILE} says {expected}; "
                f"replace the file from the original mirror (check with: cd {folder} && sha256sum -c {CHECKSUM_FILE})"
            )
        checked[name] = f"sha256:{actual}"
    archives = tuple(folder / name for name in sorted(sums) if name.endswith(".zip"))
    return Source("mirror", folder, archives, checked)


def download_official(dest_dir: Path, url: str = OFFICIAL_URL, md5: str = OFFICIAL_MD5) -> Source:
    """Download the official archive to ``dest_dir`` (once), verify its MD5, and return it as a :class:`Source`.

    The download goes to a ``.part`` file that is renamed only after the checksum matches,
    so an interrupted or corrupt download never looks finished.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / Path(url).name
    if final.is_file() and file_digest(final, "md5") == md5:
        return Source("official", final, (final,), {final.name: f"md5:{md5}"})
    part = final.with_name(final.name + f".part-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="download", disable=None) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        actual = file_digest(part, "md5")
        if actual != md5:
            raise DataError(f"downloaded {url} has md5 {actual}, expected {md5}: the download is corrupt; try again")
        os.replace(part, final)
    except DataError:
        raise
    except Exception as exc:  # network errors of every kind end here
        raise DataError(
            f"could not download {url} ({exc.__class__.__name__}: {exc}). Without internet, point to a local "
            f"mirror of the zip shards with --mirror PATH or {MIRROR_ENV}=PATH (default {default_mirror()})"
        ) from exc
    finally:
        part.unlink(missing_ok=True)
    return Source("official", final, (final,), {final.name: f"md5:{md5}"})


def resolve_source(mirror: str | Path | None, download_dir: Path, *, url: str = OFFICIAL_URL) -> Source:
    """Pick and verify the data source: explicit mirror, env mirror, shared mirror, else download.

    An explicitly named mirror that does not exist is an error (no silent download).
    """
    named = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    if named is not None and not str(named).strip():
        where = "the mirror argument (--mirror)" if mirror is not None else MIRROR_ENV
        raise ConfigError(f"{where} is set but empty; name the mirror folder, or leave it unset for the shared mirror or the download")
    if named:
        folder = Path(named).expanduser().resolve()
        if not folder.is_dir():
            raise DataError(
                f"Tiny-ImageNet mirror folder {folder} does not exist; pass an existing folder holding the zip "
                f"shards and {CHECKSUM_FILE}, or unset {MIRROR_ENV} to download the official archive"
            )
        return verify_mirror(folder)
    if default_mirror().is_dir():
        return verify_mirror(default_mirror())
    return download_official(download_dir, url=url)
