"""``backproplab explain`` prints the worked example's first iteration exactly as the article has it."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from backproplab.cli.explain import main, param_label

NUMBER = r"(-?\d+\.\d+(?:e[+-]\d+)?)"


@pytest.fixture(scope="module")
def example(shipped_data):
    return json.loads((shipped_data / "seed_example.json").read_text())


@pytest.fixture(scope="module")
def output():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([])
    assert code == 0
    return buf.getvalue()


def _param_rows(text: str) -> dict[str, tuple[float, float, float]]:
    rows = {}
    for m in re.finditer(rf"^\s+([wb]\^\d+_[\d,]+)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s*$", text, re.M):
        rows[m.group(1)] = tuple(float(m.group(i)) for i in (2, 3, 4))
    return rows


def test_gradients_and_updates_match_the_article(output, example):
    rows = _param_rows(output)
    it0 = example["iteration_0"]
    assert len(rows) == example["trainable_parameters"] == 21
    for name in ("W1", "b1", "W2", "b2"):
        grads, after, before = it0["grad"][name], it0["after_update"][name], example["initial"][name]
        if name.startswith("W"):
            cells = [((j, k), grads[j][k], after[j][k], before[j][k]) for j in range(len(grads)) for k in range(len(grads[0]))]
        else:
            cells = [((j,), grads[j], after[j], before[j]) for j in range(len(grads))]
        for index, grad, updated, initial in cells:
            label = param_label(name, index)
            value, printed_grad, printed_updated = rows[label]
            assert printed_grad == pytest.approx(grad, abs=1e-6), label
            assert printed_updated == pytest.approx(updated, abs=1e-6), label
            assert value == pytest.approx(initial, abs=1e-6), label


def test_forward_values_and_loss(output, example):
    it0 = example["iteration_0"]
    layer1 = output.split("Layer 1:")[1].split("Layer 2:")[0]
    zf = [tuple(map(float, m.groups())) for m in re.finditer(rf"^\s+\d+\s+{NUMBER}\s+{NUMBER}\s*$", layer1, re.M)]
    assert [z for z, _ in zf] == pytest.approx(it0["z1"], abs=1e-6)
    assert [f for _, f in zf] == pytest.approx(it0["f1"], abs=1e-6)
    loss = float(re.search(rf"E = {NUMBER}", output).group(1))
    assert loss == pytest.approx(it0["loss"], abs=1e-6)
    prediction = float(re.search(rf"Output and loss.*\n.*\n\s+1\s+{NUMBER}", output).group(1))
    assert prediction == pytest.approx(it0["yhat"], abs=1e-6)


def test_article_notation_and_alignment(output):
    assert "w^1_23" in output and "b^2_1" in output and "z^1_j" in output and "f^1_j" in output
    table = output.split("Parameters:")[1].strip().splitlines()[1:]
    # Right-aligned numeric columns: every row has the same length.
    assert len({len(line) for line in table}) == 1
    assert param_label("W2", (9, 2)) == "w^2_10,3"


def test_explain_takes_overrides_and_reports_errors(capsys):
    assert main(["data=xor", "model.hidden=[2]", "optimizer=adam"]) == 0
    out = capsys.readouterr().out
    assert "network 2-2-1" in out and "4 example(s)" in out and "(ex 4)" in out and "adam step" in out
    assert main(["optimizer=adamm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown optimizer 'adamm'" in err and "did you mean 'adam'" in err
