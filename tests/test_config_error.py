"""ConfigError carries its parts (key, value, valid choices, hint); one formatter words them.

Tests elsewhere assert what a message says about a key; these pin the fields themselves and the
form every message shares."""

from __future__ import annotations

import pytest

import backproplab as bp
from backproplab.errors import ConfigError, UnknownComponentError, closest, exception_line, format_problem, one_line
from backproplab.hydra_app.overrides import check_overrides


def test_the_parts_make_the_one_line_form():
    exc = ConfigError(key="optimizer.lr", value="abc", problem="is invalid for optimizer=sgd", valid="a number (default 0.5)")
    assert (exc.key, exc.value, exc.valid, exc.hint) == ("optimizer.lr", "abc", "a number (default 0.5)", None)
    assert str(exc) == "optimizer.lr='abc' is invalid for optimizer=sgd; valid: a number (default 0.5)"


def test_a_list_of_choices_and_a_hint():
    exc = ConfigError(key="modl", problem="is not a key of the config", valid=["model", "data"], valid_label="valid keys", hint="model")
    assert str(exc) == "modl is not a key of the config; valid keys: model, data; did you mean 'model'?"
    assert exc.has_value is False and exc.value is None


def test_a_ready_message_still_works():
    exc = ConfigError("data.path='x.csv' does not exist")
    assert str(exc) == "data.path='x.csv' does not exist" and exc.key is None


def test_long_values_stay_one_short_line():
    text = format_problem("optimizer.lr", "9" * 1000)
    assert len(text) < 120 and "1002 characters" in text and "\n" not in text


def test_numpy_scalars_read_as_python_values():
    np = pytest.importorskip("numpy")
    assert format_problem("trainer.epochs", np.int64(3)) == "trainer.epochs=3 is invalid"


def test_unknown_component_carries_its_choices():
    with pytest.raises(UnknownComponentError) as info:
        bp.get_registry().get("optimizer", "adamm")
    exc = info.value
    assert exc.key == "optimizer" and exc.value == "adamm" and exc.hint == "adam"
    assert "sgd" in exc.valid and "adam" in exc.valid
    assert str(exc).startswith("unknown optimizer 'adamm'; available: ")


def test_unknown_hyperparameter_names_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        bp.get_registry().create("optimizer", "sgd", momentun=0.9)
    exc = info.value
    assert exc.key == "optimizer.momentun" and exc.value == 0.9 and exc.hint == "momentum"
    assert list(exc.valid) == ["lr", "momentum", "nesterov", "weight_decay"]


def test_a_command_line_group_choice_carries_its_fields():
    with pytest.raises(ConfigError) as info:
        check_overrides(["optimizer=adamm"])
    exc = info.value
    assert (exc.key, exc.value, exc.hint) == ("optimizer", "adamm", "adam")
    assert str(exc).startswith("optimizer=adamm: unknown optimizer 'adamm'; available: ")
    with pytest.raises(ConfigError) as info:
        check_overrides(["data=moon"])
    assert (info.value.key, info.value.value, info.value.hint) == ("data", "moon", "moons")


def test_one_line_and_exception_line():
    assert one_line("a\n\n  b   c\n") == "a; b c"
    assert exception_line(ConfigError("bad\nvalue")) == "bad; value"
    assert exception_line(KeyError("x")) == "KeyError: 'x'"
    assert exception_line(RuntimeError()) == "RuntimeError"
    assert exception_line(ConfigError("own"), with_type=True) == "ConfigError: own"


def test_closest_is_the_one_did_you_mean():
    assert closest("momentun", ["lr", "momentum"]) == "momentum"
    assert closest("zzz", ["lr", "momentum"]) is None
