"""The real command: misfit loss/output pairs refused up front, consistent defaults, numbering
that matches the progress lines, and a result.json that says which loss is "final"."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFIG = 2
FAILED = 1
ARTICLE = ["0.520888", "0.647828", "0.757648", "0.836315", "0.880797", "0.907697", "0.925053"]


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def predictions(stdout: str) -> list[str]:
    return re.findall(r"prediction (\d\.\d+)", stdout)


def result_json(tmp_path: Path) -> dict:
    (path,) = tmp_path.glob("outputs/**/result.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    "args,message",
    [
        (["loss=cross_entropy"],
         "error: loss=cross_entropy expects a softmax output (got model.output_activation=sigmoid); "
         "use model.output_activation=softmax or loss=bce"),
        (["loss=hinge"],
         "error: loss=hinge expects an identity or tanh output (got model.output_activation=sigmoid); "
         "use model.output_activation=identity, model.output_activation=tanh or loss=bce"),
        # Refused before the data are read: the missing file is not what is reported.
        (["data=csv", "data.path=nowhere.csv", "loss=binary_cross_entropy", "model.output_activation=relu"],
         "error: loss=binary_cross_entropy expects a sigmoid or softmax output (got model.output_activation=relu); "
         "use model.output_activation=sigmoid or model.output_activation=softmax"),
    ],
)
def test_a_loss_that_does_not_fit_the_output_is_refused_before_anything_runs(cli, tmp_path, args, message):
    proc = cli(*args)  # with the default MLflow logger: no store may be created
    assert proc.returncode == CONFIG, proc.stderr
    assert one_line(proc.stderr) == message
    assert "iteration 1/" not in proc.stdout
    assert not list(tmp_path.glob("mlflow.db")) and not list(tmp_path.glob("mlruns"))


def test_pairs_that_fit_still_run(cli):
    proc = cli("loss=cross_entropy", "model.output_activation=softmax", "logger=none")
    assert proc.returncode == 0, proc.stderr
    proc = cli("loss=hinge", "model.output_activation=linear", "logger=none")
    assert proc.returncode == 0, proc.stderr


def test_no_arguments_and_the_gd_alias_give_the_worked_example(cli, tmp_path):
    for args in ((), ("optimizer=gd",)):
        proc = cli(*args, "logger=none")
        assert proc.returncode == 0, proc.stderr
        assert predictions(proc.stdout) == ARTICLE, args
        assert "final loss 0.077904 (mean over epoch 7; last iteration 0.077904) after 7 iterations" in proc.stdout


def test_trainer_seed_changes_the_default_weights(cli):
    proc = cli("trainer.seed=4", "logger=none")
    assert proc.returncode == 0, proc.stderr
    assert predictions(proc.stdout)[0] != ARTICLE[0]


def test_result_json_names_both_losses(cli, tmp_path):
    proc = cli("data=xor", "data.batch_size=3", "trainer.epochs=2", "model.activation=tanh", "logger=none")
    assert proc.returncode == 0, proc.stderr
    record = result_json(tmp_path)
    epochs, losses = record["epochs"], record["losses"]
    assert record["iterations"] == len(losses) == 4  # batches of 3 and 1, two epochs
    assert record["last_iteration_loss"] == losses[-1]
    assert record["final_train_loss"] == epochs[-1]["train_loss"] == pytest.approx((3 * losses[2] + losses[3]) / 4)
    assert record["final_loss"] == record["final_train_loss"] != record["last_iteration_loss"]
    assert record["final_train_accuracy"] == epochs[-1]["train_accuracy"]
    assert record["final_val_loss"] is None and record["final_val_accuracy"] is None
    expected = (f"final loss {record['final_train_loss']:.6f} (mean over epoch 2; "
                f"last iteration {record['last_iteration_loss']:.6f}) after 4 iterations")
    assert expected in proc.stdout


def test_divergence_is_reported_with_the_numbers_the_progress_lines_use(cli):
    proc = cli("data=xor", "model.activation=identity", "model.output_activation=identity", "loss=mse",
               "optimizer.lr=10", "data.batch_size=4", "trainer.epochs=50", "logger=none")
    assert proc.returncode == FAILED
    last = re.findall(r"^iteration +(\d+)/50", proc.stdout, flags=re.M)[-1]
    k = int(last) + 1  # the iteration after the last one printed, one per epoch here
    assert re.match(rf"^error: non-finite loss (inf|nan) at epoch {k}, iteration {k}; try a smaller optimizer.lr",
                    one_line(proc.stderr))


def test_a_semicolon_separated_file_gets_a_hint(cli, tmp_path):
    (tmp_path / "semi.csv").write_text("y;x1;x2\n1;2;3\n0;4;5\n")
    proc = cli("data=csv", "data.path=semi.csv", "logger=none")
    assert proc.returncode == CONFIG
    assert one_line(proc.stderr) == (
        "error: data.path='semi.csv': the file looks ';'-separated (header 'y;x1;x2'); "
        "backproplab reads comma-separated files: save it with ',' between the columns"
    )


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_learning_rate_says_what_is_valid(cli, value):
    proc = cli(f"optimizer.lr={value}", "logger=none")
    assert proc.returncode == CONFIG
    assert one_line(proc.stderr) == f"error: optimizer.lr={value} is invalid; valid: a finite number > 0"


# -- activation hyperparameters take the optimizer's syntax ----------------------------
LEAKY = ["data=moons", "data.n_samples=40", "model.hidden=[4]", "trainer.epochs=3", "initializer=he_normal"]


def test_an_activation_hyperparameter_set_like_an_optimizers(cli, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli(*LEAKY, "model.activation=leaky_relu", "model.activation.alpha=0.2", f"logger.tracking_uri={uri}")
    assert proc.returncode == 0, proc.stderr
    (run,) = MlflowClient(uri).search_runs(["1"])
    assert run.data.params["model.activation.name"] == "leaky_relu"
    assert run.data.params["model.activation.alpha"] == "0.2"
    dotted = result_json(tmp_path)["losses"]
    # The documented node form is the same run; the default alpha is a different one.
    shutil.rmtree(tmp_path / "outputs")
    proc = cli(*LEAKY, "model.activation={name:leaky_relu,alpha:0.2}", "logger=none")
    assert proc.returncode == 0, proc.stderr
    assert result_json(tmp_path)["losses"] == dotted
    shutil.rmtree(tmp_path / "outputs")
    proc = cli(*LEAKY, "model.activation=leaky_relu", "logger=none")
    assert result_json(tmp_path)["losses"] != dotted


def test_an_output_activation_hyperparameter_and_a_default_activation(cli):
    proc = cli("--cfg", "job", "model.output_activation=leaky_relu", "model.output_activation.alpha=0.3")
    assert proc.returncode == 0, proc.stderr
    assert "output_activation:\n    name: leaky_relu\n    alpha: 0.3" in proc.stdout
    proc = cli("--cfg", "job", "experiment=marks", "model.activation.alpha=0.3")  # tanh: no alpha
    assert proc.returncode == 0, proc.stderr  # --cfg prints; the run would refuse it (below)
    proc = cli("experiment=marks", "model.activation.alpha=0.3")
    assert proc.returncode == CONFIG
    assert one_line(proc.stderr) == "error: model.activation.alpha is not a hyperparameter of activation tanh; tanh takes none"


def test_an_unknown_activation_hyperparameter_is_one_line_with_a_hint(cli, tmp_path):
    proc = cli("model.activation=leaky_relu", "model.activation.alpah=0.2")
    assert proc.returncode == CONFIG
    line = one_line(proc.stderr)
    assert line.startswith("error: model.activation.alpah ") and "valid: alpha" in line and "did you mean 'alpha'?" in line
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()


def test_explain_takes_the_same_activation_syntax(cli):
    dotted = cli("explain", "data=xor", "model.activation=leaky_relu", "model.activation.alpha=0.2")
    node = cli("explain", "data=xor", "model.activation={name:leaky_relu,alpha:0.2}")
    assert dotted.returncode == 0, dotted.stderr
    assert "activation leaky_relu" in dotted.stdout and dotted.stdout == node.stdout
