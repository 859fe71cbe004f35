"""A run's memory and result.json do not grow with its length beyond a bounded summary.

``History`` keeps every loss and epoch of a short run and an evenly thinned record of a long one
(property-tested here against the full record); through the real command, a run longer than the
bound writes a result.json of bounded size whose totals and last values are exact. Peak memory
itself is measured by ``benchmarks/bench_memory.py`` (10^4 vs 10^6 epochs), not by a test."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backproplab.numerics.trainer import HISTORY_POINTS, EpochSummary, History


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), max_points=st.integers(1, 64))
def test_history_is_bounded_evenly_thinned_and_exact_at_the_end(n, max_points):
    history = History(max_points=max_points)
    losses = [float(i) * 0.5 for i in range(n)]
    for i, loss in enumerate(losses):
        history.add_loss(loss)
        history.add_epoch(EpochSummary(epoch=i, iterations=i + 1, train_loss=loss))
    assert history.iterations == n and history.n_epochs == n
    assert len(history.losses) <= max_points and len(history.epochs) <= max_points
    assert history.losses == losses[:: history.loss_stride]
    assert [e.epoch for e in history.epochs] == list(range(0, n, history.epoch_stride))
    if n <= max_points:  # a short run keeps everything
        assert history.loss_stride == history.epoch_stride == 1
    assert history.last_loss == (losses[-1] if losses else None)
    assert (history.last_epoch.epoch if history.last_epoch else None) == (n - 1 if n else None)


@pytest.mark.slow
def test_a_long_runs_result_json_is_a_bounded_summary(cli, tmp_path):
    epochs = HISTORY_POINTS + 2000  # the worked example: one iteration per epoch
    proc = cli(f"trainer.epochs={epochs}", "logger=none", "hydra.run.dir=run")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["iterations"] == epochs
    assert record["loss_stride"] == record["epoch_stride"] == 2
    assert len(record["losses"]) == len(record["epochs"]) == epochs // 2
    assert [e["epoch"] for e in record["epochs"][:3]] == [0, 2, 4]
    # the last values are exact, not the last kept point
    assert record["final_loss"] == record["final_train_loss"] != record["epochs"][-1]["train_loss"]
    assert f"(mean over epoch {epochs}; last iteration" in proc.stdout and f"after {epochs} iterations" in proc.stdout
