"""Every config key described for a person who reruns a chapter: its meaning (the ``:param:`` line of the
dataclass that holds it), its type, what it allows (asked of the validation itself, so the page cannot
drift from the code) and its value in each profile."""

from __future__ import annotations

import ast
import inspect
import re
import typing
from pathlib import Path

import nbformat
import pandas as pd

from .config import PROFILES, config_keys, get_profile
from .errors import ConfigError


def _owner(profile, key: str) -> tuple[object, str]:
    *groups, leaf = key.split(".")
    obj = profile
    for group in groups:
        obj = getattr(obj, group)
    return obj, leaf


def meaning(obj, leaf: str) -> str:
    """The ``:param leaf:`` text of ``obj``'s class docstring, on one line ('' if it has none)."""
    doc = inspect.getdoc(type(obj)) or ""
    found = re.search(rf":param {re.escape(leaf)}:(.*?)(?=\n\s*:param |\Z)", doc, flags=re.DOTALL)
    if not found:
        return ""
    text = re.sub(r":\w+:`~?([^`]*)`", r"`\1`", " ".join(found.group(1).split()))  # Sphinx roles as code
    return text.replace("``", "`")


def _type(obj, leaf: str) -> type:
    return typing.get_type_hints(type(obj))[leaf]


def type_name(tp) -> str:
    if typing.get_origin(tp) is tuple:
        return f"list of {typing.get_args(tp)[0].__name__}"
    return getattr(tp, "__name__", str(tp))


def _probes(tp, current) -> list[object]:
    """Values that the validation must refuse, so that its message says what is allowed (a list gets the bad
    item appended to its current items, so that rules over the whole list still pass)."""
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp
    probes = {str: ["not-a-choice"], bool: [], int: [10**15, -(10**15)], float: [1e15, -1e15]}.get(base, [])
    return [[*current, p] for p in probes] if typing.get_origin(tp) is tuple else probes


def allowed(key: str, profile_name: str = "cpu") -> str:
    """What ``key`` allows, from the error the validation gives for out-of-range or unknown values."""
    profile = get_profile(profile_name)
    obj, leaf = _owner(profile, key)
    tp = _type(obj, leaf)
    if tp is bool:
        return "true or false"
    each = "each item: " if typing.get_origin(tp) is tuple else ""
    for probe in _probes(tp, getattr(obj, leaf)):
        try:
            get_profile(profile_name, {key: probe})
        except ConfigError as exc:
            _, found, text = str(exc).partition("allowed: ")
            if found:
                return each + text
    return f"any {type_name(tp)}"


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ", ".join(_shown(v) for v in value) if value else "(empty)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parameter_table(profiles: tuple[str, ...] = PROFILES) -> pd.DataFrame:
    """One row per config key: meaning, type, allowed values (as the cpu profile validates them), and the value
    in each of ``profiles``."""
    loaded = {name: get_profile(name) for name in profiles}
    cpu = get_profile("cpu")
    records = []
    for key in config_keys(cpu):
        obj, leaf = _owner(cpu, key)
        record = {"key": key, "meaning": meaning(obj, leaf), "type": type_name(_type(obj, leaf)), "allowed": allowed(key)}
        for name, profile in loaded.items():
            record[name] = _shown(getattr(*_owner(profile, key)))
        records.append(record)
    return pd.DataFrame.from_records(records).set_index("key")


def notebook_parameters(path: Path) -> pd.DataFrame:
    """The papermill parameters of a notebook: name, default (as written) and its comment."""
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    records = []
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            line = cell.source.splitlines()[node.lineno - 1]
            comment = line[node.end_col_offset :].partition("#")[2].strip()
            records.append({"parameter": node.targets[0].id, "default": ast.get_source_segment(cell.source, node.value), "meaning": comment})
    return pd.DataFrame.from_records(records)
