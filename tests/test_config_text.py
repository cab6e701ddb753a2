"""One reading of config text through every door (issue 27 item 9): the command line's --set, papermill's
overrides as text, and a Python mapping of text give the same value (so the same result key) or the same kind of
error, one ConfigError naming the key; malformed text, tags, stray signs and non-ASCII digits are refused."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compat.cli import _parse_sets
from compat.config import get_profile
from compat.config_text import read_parameter
from compat.errors import ConfigError
from compat.store import config_key

KEYS = {
    "int": "model.width",
    "float": "old_train.lr",
    "bool": "protocol.test_flip",
    "ints": "protocol.seeds",
    "text": "protocol.scenario",
    "texts": "protocol.distances",
    "studies": "unibct_study.scenarios",
}


def _value(profile, key: str):
    obj = profile
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _doors(key: str, text: str):
    """What each door makes of ``text`` for ``key``: the value, or 'error' (any other exception fails)."""
    doors = {"--set": _parse_sets([f"{key}={text}"]), "mapping of text": {key: text}, "overrides text": f"{key}: {text}"}
    seen = {}
    for door, overrides in doors.items():
        try:
            seen[door] = _value(get_profile("smoke", overrides), key)
        except ConfigError as exc:
            assert key.rsplit(".", 1)[-1] in str(exc) or "overrides" in str(exc), (door, str(exc))
            seen[door] = "error"
    return seen


MALFORMED = [
    ("ints", "[0, 1"),
    ("ints", "[[0]]"),
    ("int", "--8"),
    ("int", "+-8"),
    ("int", "²"),
    ("int", "١٦"),
    ("int", "0x10"),
    ("int", "1_6"),
    ("int", "!!int 16"),
    ("ints", "[!!python/object:os.system 1]"),
    ("float", "1_0.5"),
    ("float", "١.٥"),
    ("float", "1e999"),
    ("float", "0x1p-3"),
    ("float", ".inf"),
    ("bool", "yes"),
    ("bool", "on"),
    ("text", "!!str open-class"),
    ("texts", "[l2, l2"),
    ("int", "{a: 1}"),
]


@pytest.mark.parametrize("kind, text", MALFORMED)
@pytest.mark.reliability(
    fault="malformed config text (unclosed brackets, stray signs, non-ASCII digits, YAML tags, YAML 1.1 guesses such as 0x10 or yes)",
    behaviour="one ConfigError naming the key through --set, papermill's overrides text and a mapping alike; never a guessed value",
)
def test_malformed_text_is_refused_naming_the_key_through_every_door(kind, text):
    assert set(_doors(KEYS[kind], text).values()) == {"error"}


@pytest.mark.parametrize(
    "kind, text, value",
    [
        ("int", "16", 16),
        ("int", " +16 ", 16),
        ("float", "1e-3", 0.001),
        ("float", ".5", 0.5),
        ("bool", "False", False),
        ("ints", "0,1", (0, 1)),
        ("ints", "[0, 1]", (0, 1)),
        ("studies", "[]", ()),
        ("texts", "[l2]", ("l2",)),
        ("text", "open-class", "open-class"),
    ],
)
def test_well_formed_text_gives_one_value_through_every_door(kind, text, value):
    assert _doors(KEYS[kind], text) == dict.fromkeys(("--set", "mapping of text", "overrides text"), value)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["int", "float", "ints"]), text=st.text(alphabet="0123456789+-._eExob ,[]١²!", min_size=1, max_size=8))
@pytest.mark.reliability(
    fault="the same config text through different doors (command line, papermill text, papermill mapping)",
    behaviour="the same value and so the same result key, or the same refusal (property-based)",
)
def test_the_same_text_gives_the_same_value_and_key_through_every_door(kind, text):
    key = KEYS[kind]
    seen = _doors(key, text)
    assert len(set(map(repr, seen.values()))) == 1, seen
    if seen["--set"] != "error":
        configs = [get_profile("smoke", {key: text}), get_profile("smoke", _parse_sets([f"{key}={text}"]))]
        assert len({config_key(c.model) + config_key(c.old_train) + config_key(c.protocol) for c in configs}) == 1


def test_repeated_keys_and_non_mappings_are_refused():
    with pytest.raises(ConfigError, match="repeated key 'model.width'"):
        get_profile("smoke", "{model.width: 8, model.width: 16}")
    with pytest.raises(ConfigError, match="overrides must be a mapping"):
        get_profile("smoke", "[0, 1]")
    assert get_profile("smoke", "") == get_profile("smoke")


@pytest.mark.parametrize(
    "text, value",
    [
        ("true", True),
        ("False", False),
        ("3", 3),
        ("-2", -2),
        ("0.5", 0.5),
        ("١", "١"),
        ("0x10", "0x10"),
        ("yes", "yes"),
        ('{"protocol.seeds": [0]}', '{"protocol.seeds": [0]}'),
    ],
)
def test_book_execute_parameters_read_as_papermills_p_by_the_same_grammars(text, value):
    assert read_parameter(text) == value and type(read_parameter(text)) is type(value)
