"""``backproplab explain [overrides]``: the article's tables for the first iteration of a run.

The run is composed exactly as ``backproplab [overrides]`` would compose it and trained by the
real Trainer for one iteration, so the tables show what training computes, not a re-derivation:
the inputs, each layer's z and f, the loss, every parameter with its gradient and its value
after the optimizer step. Names follow the article: ``w^l_jk`` is the weight from input k into
neuron j of layer l, numbered from 1.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from backproplab.hydra_app.compat import version_base
from backproplab.hydra_app.error_report import describe, tracebacks_wanted
from backproplab.numerics.trainer import Callback, History, Step

MAX_EXAMPLES = 4  # forward-value columns shown for a mini-batch


def num(value: float) -> str:
    value = float(value)
    if value != 0 and not 1e-4 <= abs(value) < 1e6:
        return f"{value:.6e}"
    return f"{value:.6f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Columns right-aligned to their widest cell, the first left-aligned (it holds names)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    def line(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return indent + "   ".join(parts).rstrip()
    return "\n".join([line(headers)] + [line(r) for r in rows])


def _sub(*indices: int) -> str:
    """Subscripts as the article writes them: w^1_23, or w^2_10,3 once an index has two digits."""
    sep = "," if any(i >= 10 for i in indices) else ""
    return sep.join(str(i) for i in indices)


def param_label(name: str, index: tuple[int, ...]) -> str:
    layer = name[1:]
    if name.startswith("W"):
        j, k = index
        return f"w^{layer}_{_sub(j + 1, k + 1)}"
    return f"b^{layer}_{_sub(index[0] + 1)}"


class _Stop(Exception):
    """Ends training once the first update is known."""


@dataclass
class FirstIteration:
    inputs: np.ndarray
    targets: np.ndarray
    outputs: np.ndarray
    loss: float
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    zs: list[np.ndarray]
    activations: list[np.ndarray]
    updated: dict[str, np.ndarray] | None = None


class _Capture(Callback):
    def __init__(self, network: Any) -> None:
        self.network = network
        self.first: FirstIteration | None = None

    def on_iteration(self, step: Step) -> None:
        if step.iteration == 0:
            zs, as_ = self.network.cache
            self.first = FirstIteration(
                inputs=np.array(step.inputs),
                targets=np.array(step.targets),
                outputs=np.array(step.outputs),
                loss=step.loss,
                params={k: np.array(v) for k, v in step.params.items()},
                grads={k: np.array(v) for k, v in step.grads.items()},
                zs=[np.array(z) for z in zs],
                activations=[np.array(a) for a in as_[1:]],
            )
        else:  # the second iteration's forward pass used the first update's parameters
            assert self.first is not None
            self.first.updated = {k: np.array(v) for k, v in step.params.items()}
            raise _Stop

    def on_train_end(self, history: History) -> None:
        if self.first is not None and self.first.updated is None:
            self.first.updated = {k: np.array(v) for k, v in self.network.params.items()}


def first_iteration(prepared: Any) -> FirstIteration:
    capture = _Capture(prepared.network)
    trainer = prepared.trainer([capture], epochs=1)
    try:
        trainer.fit(prepared.dataset.X_train, prepared.y_train)
    except _Stop:
        pass
    assert capture.first is not None and capture.first.updated is not None
    return capture.first


def _component(spec: Any) -> str:
    params = {k: v for k, v in spec.params.items()}
    inner = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"{spec.name}({inner})" if inner else spec.name


def _act_name(spec: Any) -> str:
    return spec if isinstance(spec, str) else str(spec.get("name"))


def render(prepared: Any, it: FirstIteration) -> str:
    cfg = prepared.config
    net = prepared.network
    m = it.inputs.shape[0]
    shown = min(m, MAX_EXAMPLES)
    ex = lambda i: f" (ex {i + 1})" if m > 1 else ""  # noqa: E731
    n_layers = net.n_layers
    acts = [_act_name(cfg.model.activation)] * (n_layers - 1) + [_act_name(cfg.model.output_activation)]
    out = [
        f"First iteration of data={prepared.dataset.name}: network {'-'.join(map(str, net.sizes))}, "
        f"{m} example(s) in the batch{'' if shown == m else f' (showing {shown})'}",
        f"loss {_component(cfg.loss)}; optimizer {_component(cfg.optimizer)}; initializer {_component(cfg.initializer)}",
        "",
        "Inputs (f^0_k = x_k)",
        table(
            ["k"] + [f"x_k{ex(i)}" for i in range(shown)],
            [[str(k + 1)] + [num(it.inputs[i, k]) for i in range(shown)] for k in range(net.n_inputs)],
        ),
    ]
    for l in range(1, n_layers + 1):
        z, f = it.zs[l - 1], it.activations[l - 1]
        headers = ["j"]
        for i in range(shown):
            headers += [f"z^{l}_j{ex(i)}", f"f^{l}_j{ex(i)}"]
        rows = []
        for j in range(net.sizes[l]):
            row = [str(j + 1)]
            for i in range(shown):
                row += [num(z[i, j]), num(f[i, j])]
            rows.append(row)
        out += ["", f"Layer {l}: {net.sizes[l - 1]} -> {net.sizes[l]}, activation {acts[l - 1]}  (z = W f^{l - 1} + b, f = activation(z))", table(headers, rows)]
    target_rows = []
    for j in range(net.n_outputs):
        row = [str(j + 1)]
        for i in range(shown):
            row += [num(it.outputs[i, j]), num(it.targets[i, j])]
        target_rows.append(row)
    headers = ["j"]
    for i in range(shown):
        headers += [f"prediction{ex(i)}", f"target{ex(i)}"]
    out += ["", f"Output and loss: E = {num(it.loss)} (mean over the batch)", table(headers, target_rows)]
    rows = []
    for name in net.params:
        before, grad, after = it.params[name], it.grads[name], it.updated[name]  # type: ignore[index]
        for index in np.ndindex(before.shape):
            rows.append([param_label(name, index), num(before[index]), num(grad[index]), num(after[index])])
    out += [
        "",
        f"Parameters: value used in the forward pass, gradient dE/dparam, value after the {cfg.optimizer.name} step",
        table(["parameter", "value", "gradient", "updated"], rows),
    ]
    return "\n".join(out)


def main(argv: Sequence[str]) -> int:
    """Compose the run from ``argv`` overrides, train one iteration, print the tables."""
    try:
        from hydra import compose, initialize_config_module

        from backproplab.hydra_app.config_store import register_configs
        from backproplab.run.job import prepare
        from backproplab.hydra_app.overrides import check_overrides

        from backproplab.hydra_app.preflight import for_hydra

        args = list(argv)
        check_overrides(args)
        register_configs()
        args = for_hydra(args, single_run=True)  # model.activation.alpha=0.2 as the run takes it
        with initialize_config_module("backproplab.conf", **version_base()):
            cfg = compose("config", overrides=args)
        prepared = prepare(cfg)
        text = render(prepared, first_iteration(prepared))
    except Exception as exc:
        if tracebacks_wanted():
            raise
        line, code = describe(exc, overrides=list(argv))
        print(line, file=sys.stderr, flush=True)
        return code
    print(text)
    return 0
