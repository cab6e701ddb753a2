"""The one reading of text that reaches the configuration, whichever door it comes through: the command line's
``--set key=value``, papermill's ``overrides`` (a mapping written as text, or a Python mapping whose values are
text), ``book execute -p``. The same text gives the same value, hence the same result key, through every door.

Text is read as YAML's flow syntax without its type guessing: :func:`read_text` keeps every scalar as text
(``0x10``, ``1_6``, ``yes`` stay text) and refuses tags (``!!int``), duplicate keys and malformed text; then
:func:`parse_value` turns the scalar text into the declared type by ASCII grammars, so non-ASCII digits, stray
signs and underscores are refused rather than guessed.
"""

from __future__ import annotations

import math
import re
import typing

import yaml

from .errors import ConfigError

INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def read_text(text: str, what: str):
    """``text`` as text, a list or a mapping (of text, lists and mappings); ``what`` names it in errors."""
    try:
        tagged = [e.tag for e in yaml.parse(text, Loader=yaml.BaseLoader) if getattr(e, "tag", None) is not None]
        node = yaml.compose(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{what}: cannot read {text!r} ({problem})") from None
    if tagged:
        raise ConfigError(f"{what}: {text!r} carries the YAML tag {tagged[0]!r}; write plain values (no tags)")
    return "" if node is None else _value(node, text, what)


def _value(node: yaml.Node, text: str, what: str):
    if isinstance(node, yaml.ScalarNode):
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_value(item, text, what) for item in node.value]
    mapping = {}
    for key_node, value_node in node.value:
        key = _value(key_node, text, what)
        if not isinstance(key, str) or key in mapping:
            raise ConfigError(f"{what}: {text!r} has {'a repeated' if key in mapping else 'a non-text'} key {key!r}")
        mapping[key] = _value(value_node, text, f"config key {key!r}")
    return mapping


def read_overrides(text: str) -> dict:
    """Papermill's ``overrides`` given as text, e.g. ``'{"protocol.seeds": [0, 1]}'``: a mapping (empty text:
    none)."""
    mapping = read_text(text, "overrides")
    if mapping == "":
        return {}
    if not isinstance(mapping, dict):
        raise ConfigError(f'overrides must be a mapping such as {{"protocol.seeds": [0, 1]}}, got {text!r}')
    return mapping


def read_parameter(text: str):
    """A notebook parameter from ``book execute -p name=text``, as papermill's own ``-p`` reads it but by the
    grammars above: true/false, an integer, a decimal number, else the text itself (``overrides`` text stays
    text, and :func:`compat.config.get_profile` reads it)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if INTEGER.fullmatch(text):
        return int(text)
    if DECIMAL.fullmatch(text):
        return float(text)
    return text


def parse_value(value, kind, key: str):
    """``value`` (already read: text, a list of text, or a Python value) as the declared type ``kind``: bool,
    int, float, str, or a tuple of one of them (text for a tuple is split at commas). Floats must be finite."""
    if typing.get_origin(kind) is tuple:
        element = typing.get_args(kind)[0]
        if isinstance(value, str):
            value = [item for item in value.split(",") if item.strip()]
        elif isinstance(value, (bool, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} wants a list of {element.__name__}, got {value!r}")
        return tuple(parse_value(item, element, key) for item in value)
    text = value.strip() if isinstance(value, str) else None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in BOOLEANS:
            return BOOLEANS[text.lower()]
        raise ConfigError(f"config key {key!r} wants true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text is not None and INTEGER.fullmatch(text):
            return int(text)
        raise ConfigError(f"config key {key!r} wants an integer, got {value!r} (ASCII digits 0-9, an optional sign)")
    if kind is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if abs(value) < 1e308 else math.inf
        elif text is not None and DECIMAL.fullmatch(text):
            number = float(text)
        if number is None or not math.isfinite(number):
            raise ConfigError(f"config key {key!r} wants a finite number, got {value!r} (a decimal such as 0.1 or 1e-3)")
        return number
    if kind is str:
        if text is None:
            raise ConfigError(f"config key {key!r} wants text, got {value!r}")
        return text
    raise ConfigError(f"config key {key!r} has a type ({kind}) that cannot be set from outside")
