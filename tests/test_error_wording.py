"""Error texts say things once, in the user's terms: no numpy reprs, no repeated prefixes, and
the valid range that is really checked. Composed through Hydra's compose API as the CLI does."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module

from backproplab.hydra_app.compat import version_base
from backproplab.hydra_app.config_store import register_configs
from backproplab.run.job import prepare
from backproplab.run.data import load_dataset
from backproplab.errors import ConfigError

register_configs()  # the generated component and experiment nodes, as the CLI stores them


def _compose(*overrides: str):
    with initialize_config_module("backproplab.conf", **version_base()):
        return compose("config", overrides=["logger=none", *overrides])


def refused(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        prepare(_compose(*overrides))
    text = str(info.value)
    assert "\n" not in text and "np." not in text and "array(" not in text
    return text


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer.lr=nan"], "optimizer.lr=nan is invalid; valid: a finite number > 0"),
        (["optimizer.lr=inf"], "optimizer.lr=inf is invalid; valid: a finite number > 0"),
        (["optimizer=adam", "optimizer.lr=-inf"], "optimizer.lr=-inf is invalid; valid: a finite number > 0"),
        (["optimizer=adam", "optimizer.beta1=nan"],
         "optimizer.beta1=nan is invalid for optimizer=adam; valid: a finite number (default 0.9)"),
        (["optimizer.momentum=1.0"], "optimizer.momentum=1.0 is invalid for optimizer=sgd; valid: in [0, 1)"),
        (["optimizer.nesterov=true"], "optimizer=sgd: optimizer.nesterov=true needs optimizer.momentum > 0, got optimizer.momentum=0"),
        (["+optimizer.foo=1"], "optimizer=sgd has no hyperparameter 'foo'; valid: lr, momentum, nesterov, weight_decay"),
        (["initializer.scale=-1.0"], "initializer.scale=-1.0 is invalid for initializer=legacy_randn; valid: a finite number > 0"),
        (["loss=huber", "loss.delta=-1.0", "model.output_activation=identity"],
         "loss.delta=-1.0 is invalid for loss=huber; valid: a finite number > 0"),
        (["model.activation={name:leaky_relu,alpha:-1.0}"],
         "model.activation.alpha=-1.0 is invalid for model.activation=leaky_relu; valid: a finite number >= 0"),
        (["model.output_activation={name:elu,alpha:0.0}", "loss=mse"],
         "model.output_activation.alpha=0.0 is invalid for model.output_activation=elu; valid: a finite number > 0"),
    ],
)
def test_component_errors_name_the_component_once(overrides, message):
    assert refused(*overrides) == message


def _csv(tmp_path, text, **options):
    path = tmp_path / "data.csv"
    path.write_text(text)
    cfg = {"name": "csv", "path": str(path), "target": "y", "batch_size": 1, "shuffle": False,
           "val_fraction": 0.0, "standardize": False, "seed": 0, **options}
    return cfg


def test_a_fractional_label_is_shown_as_a_plain_number(tmp_path):
    cfg = _csv(tmp_path, "y,x1\n0,1\n2.5,2\n1,3\n", task="multiclass")
    with pytest.raises(ConfigError) as info:
        load_dataset(cfg)
    assert str(info.value) == (
        "data.task=multiclass: column 'y' of data.csv holds 2.5, which is not a class label; "
        "valid: integer labels, or data.task=regression"
    )


@pytest.mark.parametrize("sep,shown", [(";", "';'"), ("\t", "'\\t'"), ("|", "'|'")])
def test_a_file_separated_by_something_else_than_commas_says_so(tmp_path, sep, shown):
    rows = ["y,x1,x2".replace(",", sep), "1,2,3".replace(",", sep), "0,4,5".replace(",", sep)]
    cfg = _csv(tmp_path, "\n".join(rows) + "\n")
    with pytest.raises(ConfigError) as info:
        load_dataset(cfg)
    text = str(info.value)
    assert f"the file looks {shown}-separated" in text
    assert text.endswith("backproplab reads comma-separated files: save it with ',' between the columns")


def test_a_european_csv_with_decimal_commas_gets_the_same_hint(tmp_path):
    cfg = _csv(tmp_path, "y;x1\n1;2,5\n0;3,5\n")
    with pytest.raises(ConfigError, match=r"the file looks ';'-separated"):
        load_dataset(cfg)


def test_a_comma_separated_file_with_a_semicolon_in_a_column_name_is_read(tmp_path):
    cfg = _csv(tmp_path, "y,x;1\n1,2\n0,3\n")
    assert load_dataset(cfg).feature_names == ["x;1"]
