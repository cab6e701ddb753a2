"""Property-based: for every settable config key of every profile, random bad values (non-finite or
negative numbers, non-numbers, unknown names) are refused by one ConfigError that names the key,
before any data is loaded or any model is built."""

import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compat.config import PROFILES, config_keys, get_profile
from compat.errors import ConfigError


def _field_type(profile, key: str):
    obj = profile
    parts = key.split(".")
    for part in parts[:-1]:
        obj = obj.sections[part] if part in getattr(obj, "sections", {}) else getattr(obj, part)
    return typing.get_type_hints(type(obj))[parts[-1]]


BAD = {
    float: st.one_of(
        st.just(math.nan), st.just(math.inf), st.just("nan"), st.floats(max_value=-1e-3, allow_nan=False), st.text(alphabet="abcxyz", min_size=1)
    ),
    int: st.one_of(st.integers(max_value=-1), st.just("1.5"), st.just(2.5), st.text(alphabet="abcxyz", min_size=1)),
    bool: st.one_of(st.just("maybe"), st.just(2), st.just("yes please")),
    str: st.text(alphabet="QWZ!?", min_size=1),
}


def _bad_values(kind):
    if typing.get_origin(kind) is tuple:
        element = typing.get_args(kind)[0]
        return st.lists(BAD[element], min_size=1, max_size=3)
    return BAD[kind]


CASES = [(name, key) for name in PROFILES for key in config_keys(get_profile(name))]


@pytest.mark.parametrize("profile_name, key", CASES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.reliability(
    fault="a bad value for any config key (NaN, infinite, negative, text for a number, unknown name)",
    behaviour="one error naming the key and the allowed values, before any work (property-based, every key of every profile)",
)
def test_every_key_refuses_bad_values_naming_the_key(profile_name, key, data):
    kind = _field_type(get_profile(profile_name), key)
    value = data.draw(_bad_values(kind), label="bad value")
    with pytest.raises(ConfigError) as error:
        get_profile(profile_name, {key: value})
    assert key.rsplit(".", 1)[-1].rstrip("s") in str(error.value) or key in str(error.value)
