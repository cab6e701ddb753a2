"""SHA-256 digests of files: what the store's sidecars and the data cache's manifest record and check."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of the file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_MATCHED: set[tuple] = set()  # (path, size, mtime, digest) already found intact in this process: hashed once


def matches_digest(path: Path, digest: str | None) -> bool:
    """Whether ``path``'s sha256 is ``digest``; a file state that matched once in this process is not hashed again."""
    stat = path.stat()
    state = (str(path), stat.st_size, stat.st_mtime_ns, digest)
    if state in _MATCHED:
        return True
    if digest != sha256_of(path):
        return False
    _MATCHED.add(state)
    return True
