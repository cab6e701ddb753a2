"""The project's error types and the helpers that validate user input before any work starts."""

from __future__ import annotations

import errno
import numbers
from collections.abc import Iterable
from typing import Any


class CompatError(Exception):
    """Base class: every error this package raises on purpose."""


class ConfigError(CompatError, ValueError):
    """A parameter value is unknown or out of range."""


class DataError(CompatError):
    """A dataset source is missing, corrupt or cannot be prepared."""


class StorageError(CompatError):
    """A file cannot be written: the disk is full, a file-size limit is reached, or the folder refuses it."""


STORAGE_REMEDIES = {  # errno -> what to do; anything else: the folder refuses the file
    errno.ENOSPC: "free space on its disk (or move the folder elsewhere) and rerun",
    errno.EDQUOT: "free space within your disk quota (or move the folder elsewhere) and rerun",
    errno.EFBIG: "raise the file-size limit (`ulimit -f unlimited`) and rerun",
}


def storage_error(path, exc: OSError, kept: str) -> StorageError:
    """One error for an ``OSError`` met while writing ``path``: what the system said, what to do, and ``kept``
    (what the failed write left, which is never a half-written file)."""
    remedy = STORAGE_REMEDIES.get(exc.errno, "make its folder writable and rerun")
    return StorageError(f"cannot write {path} ({exc.strerror or exc}): {remedy}; {kept}")


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise naming the bad value and the choices."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; allowed: {', '.join(map(repr, allowed))}")
    return value


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` if it lies in the given interval, else raise naming the value and the interval (NaN never does)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ConfigError(
            f"{name}={value!r} is not a number; allowed: {'(' if low_open else '['}"
            f"{'-inf' if low is None else low}, {'inf' if high is None else high}{')' if high_open else ']'}"
        )
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ConfigError(f"{name}={value!r} is out of range; allowed: {left}{lo}, {hi}{right}")
    return value


def check_seeds(name: str, seeds, allow_empty: bool = False) -> None:
    """Seeds are distinct integers in [0, 2**31 - 1]; an empty list only where ``allow_empty`` (a chapter's
    own list, empty: the protocol's)."""
    if (not seeds and not allow_empty) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{name} must be distinct{'' if allow_empty else ' and non-empty'}, got {seeds!r}")
    for seed in seeds:
        check_range(f"{name} item", seed, 0, 2**31 - 1)
