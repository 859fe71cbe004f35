"""result.json says which loss it calls final, with the names the sweep summary uses."""

from __future__ import annotations

from backproplab.run.job import RunResult


def epoch(i, train_loss, val_loss=None):
    return {"epoch": i, "iterations": 2 * (i + 1), "train_loss": train_loss, "train_accuracy": 0.5,
            "val_loss": val_loss, "val_accuracy": None if val_loss is None else 0.75}


def test_final_loss_is_the_last_epochs_mean_and_the_last_batch_is_named_apart():
    result = RunResult("ok", [0.9, 0.7, 0.6, 0.2], [epoch(0, 0.8, 1.0), epoch(1, 0.4, 0.5)])
    record = result.to_json()
    assert record["final_loss"] == record["final_train_loss"] == 0.4
    assert record["last_iteration_loss"] == 0.2
    assert (record["final_val_loss"], record["final_train_accuracy"], record["final_val_accuracy"]) == (0.5, 0.5, 0.75)
    assert result.summary() == "final loss 0.400000 (mean over epoch 2; last iteration 0.200000) after 4 iterations"


def test_without_a_finished_epoch_the_last_iteration_is_final_as_in_the_sweep_summary():
    result = RunResult("ok", [0.9, 0.7])
    assert (result.final_loss, result.final_train_loss, result.last_iteration_loss) == (0.7, None, 0.7)
    assert result.summary() == "final loss 0.700000 (last iteration) after 2 iterations"


def test_a_failed_job_has_no_losses():
    record = RunResult("failed", error="boom").to_json()
    assert record["final_loss"] is None and record["last_iteration_loss"] is None and record["final_train_loss"] is None


def test_a_diverged_runs_line_stays_short():
    # A loss near the float limit printed with %.6f is a 300-digit number; the closing line
    # switches to scientific notation from 1e6, as the progress lines do.
    result = RunResult("ok", [0.9, 3e300], [epoch(0, 1.5e300)])
    assert result.summary() == "final loss 1.500000e+300 (mean over epoch 1; last iteration 3.000000e+300) after 2 iterations"
