"""Built-in data sets, registered through ``register_datasets`` exactly as a third party's are.

Each factory's keyword parameters are its ``data.KEY=`` options; ``@data_defaults`` sets its
defaults for the options every data set has (batch size, shuffling, validation split, scaling,
seed). Nothing is downloaded: the generators and the two bundled sets ship with scikit-learn,
the worked example's single row is built in, and marks.csv ships in ``backproplab.datasets``.

The generators and ``csv`` check their own options (``data.n_samples``, ``data.noise``,
``data.path``...) with messages that name the valid range or the file, so those parameters are
annotated ``numbers.Integral``, ``numbers.Real`` or ``Any`` rather than ``int``, ``float`` or
``str``, which the generated config schema would check first in generic words.
"""

from __future__ import annotations

import csv as csv_module
import io
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np

from backproplab import Examples, data_defaults, hookimpl
from backproplab.components.datasets import Wording, interpret
from backproplab.errors import ConfigError
from backproplab.validation import check_data_size, is_finite_number

SEED_EXAMPLE_X = [[7.0, 8.0, 10.0]]
SEED_EXAMPLE_Y = [1.0]
# The generators' points span about 1 unit; a noise a million times that is already pure noise,
# and near the float limit its Gaussian draws overflow to inf (found by tests/test_cli_fuzz.py).
MAX_NOISE = 1e6
SPLIT_AND_SCALED = {"val_fraction": 0.2, "standardize": True}


@data_defaults(batch_size=1, shuffle=False)
def seed_example() -> Examples:
    """The article's single training example x = [7, 8, 10], y = 1 (row 3 of marks.csv)."""
    return Examples(np.array(SEED_EXAMPLE_X), np.array(SEED_EXAMPLE_Y), ["x1", "x2", "x3"], task="binary",
                    source="backproplab: the worked example's single row")


@data_defaults(batch_size=4, shuffle=False)
def xor() -> Examples:
    """The four XOR points, targets 0 1 1 0."""
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return Examples(X, np.array([0.0, 1.0, 1.0, 0.0]), ["x1", "x2"], task="binary", source="backproplab: the four XOR points")


def _n_samples(n: Any, n_features: int = 2) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"data.n_samples={n!r} is invalid; valid: an integer >= 2")
    check_data_size("data.n_samples", n, n, n_features)
    return n


def _noise(noise: Any) -> float:
    if not is_finite_number(noise) or not 0 <= noise <= MAX_NOISE:
        raise ConfigError(key="data.noise", value=noise, valid="a number in [0, 1e6]")
    return float(noise)


@data_defaults(**SPLIT_AND_SCALED)
def moons(n_samples: numbers.Integral = 200, noise: numbers.Real = 0.1, seed: int = 0) -> Examples:
    """scikit-learn's make_moons: two interleaving half circles (binary), drawn with data.seed."""
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=_n_samples(n_samples), noise=_noise(noise), random_state=seed)
    return Examples(X, y.astype(float), ["x1", "x2"], task="binary", source="sklearn.datasets.make_moons")


@data_defaults(**SPLIT_AND_SCALED)
def circles(n_samples: numbers.Integral = 200, noise: numbers.Real = 0.05, factor: numbers.Real = 0.5, seed: int = 0) -> Examples:
    """scikit-learn's make_circles: a small circle inside a large one (binary)."""
    from sklearn.datasets import make_circles

    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
        raise ConfigError(f"data.factor={factor!r} is invalid; valid: a number in (0, 1)")
    X, y = make_circles(n_samples=_n_samples(n_samples), noise=_noise(noise), factor=float(factor), random_state=seed)
    return Examples(X, y.astype(float), ["x1", "x2"], task="binary", source="sklearn.datasets.make_circles")


@data_defaults(**SPLIT_AND_SCALED)
def breast_cancer() -> Examples:
    """scikit-learn's bundled Wisconsin breast cancer set: 569 examples, 30 features, binary."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return Examples(bunch.data, bunch.target.astype(float), [str(n) for n in bunch.feature_names], task="binary",
                    source="sklearn.datasets.load_breast_cancer")


@data_defaults(**SPLIT_AND_SCALED)
def digits() -> Examples:
    """scikit-learn's bundled 8x8 digits: 1797 examples, 64 features, 10 classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return Examples(bunch.data, bunch.target.astype(float), task="multiclass", source="sklearn.datasets.load_digits")


def csv(path: Any, target: Any = "y", features: Any = None, task: Any = "auto") -> Examples:
    """A CSV file with a header row; relative paths start in the working directory.
    ``features`` null: every column but the target. ``task`` auto: 0/1 targets are binary,
    other integer targets with at most 20 values and class names are classes, anything else is
    regression; or binary, multiclass, regression."""
    if not isinstance(path, str) or not path:
        raise ConfigError(
            f"data.path={path!r} is missing; valid: the path of a CSV file with a header row, "
            "e.g. data.path=data/train.csv (or data=marks for the shipped marks.csv)"
        )
    return read_csv(Path(path), target, features, task)


@data_defaults(batch_size=20, **SPLIT_AND_SCALED)
def marks() -> Examples:
    """marks.csv, shipped in the package (backproplab.datasets): 395 students, columns y,x1,x2,x3;
    y is 1 for pass, 0 for fail (binary). MIT-licensed, see marks.LICENSE beside it."""
    from backproplab.datasets import path

    return read_csv(path("marks.csv"), "y", None, "binary")


@hookimpl
def register_datasets(register):
    register("seed_example", seed_example)
    register("csv", csv)
    register("marks", marks)
    register("xor", xor)
    register("moons", moons)
    register("circles", circles)
    register("breast_cancer", breast_cancer)
    register("digits", digits)


# -- reading a CSV file ------------------------------------------------------------------------


def _other_delimiter(header: list[str]) -> str | None:
    """';', tab or '|' when a header row read as comma-separated is one cell that such a
    delimiter would split (a spreadsheet's "CSV" in many locales uses ';')."""
    if len(header) != 1:
        return None
    for delimiter in (";", "\t", "|"):
        if len([cell for cell in header[0].split(delimiter) if cell.strip()]) >= 2:
            return delimiter
    return None


def _shown(path: Path) -> str:
    return str(path) if len(str(path)) <= 80 else f"...{str(path)[-60:]}"


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The file's non-blank rows as text, each with the line it starts on. Blank and
    whitespace-only lines are skipped, as pandas and the csv module's DictReader skip them. A file
    that is not UTF-8 text is one line naming the file and where it stops being text, instead of
    a UnicodeDecodeError from the csv module."""
    shown = _shown(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"data.path={shown!r} cannot be read: {exc.strerror or exc}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ConfigError(
            f"data.path={shown!r} is not a text CSV file: it holds a NUL byte at byte offset {nul} (line {line}), "
            "as binary files (a spreadsheet, an archive, a NumPy file) do; valid: a comma-separated UTF-8 text file"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"data.path={shown!r} is not UTF-8 text: byte {data[exc.start:exc.start + 1]!r} at byte offset {exc.start} "
            f"(line {line}) cannot be decoded; valid: a UTF-8 encoded CSV file (re-save it as UTF-8, e.g. "
            "iconv -f latin1 -t utf-8)"
        ) from None
    reader = csv_module.reader(io.StringIO(text, newline=""))  # as open(newline="") would split it
    rows = []
    line = 1  # where the next row starts: line_num counts the lines read so far
    try:
        for row in reader:
            if row and not (len(row) == 1 and not row[0].strip()):
                rows.append((line, row))
            line = reader.line_num + 1
    except csv_module.Error as exc:  # e.g. a field beyond the csv module's size limit
        raise ConfigError(f"data.path={shown!r} line {reader.line_num} cannot be read as CSV: {exc}") from None
    return rows


def _repeated_column(path: Path, header: list[str]) -> None:
    """A header naming one column twice is refused: a name then stands for two columns, and any
    choice of one of them would be a silent guess."""
    first: dict[str, int] = {}
    for index, name in enumerate(header, start=1):
        if name in first:
            what = f"the column name {name!r}" if name else "an empty column name"
            raise ConfigError(
                f"data.path={_shown(path)!r}: {what} is in the header twice (columns {first[name]} and {index}); "
                "valid: a header whose column names are all different (rename one of them)"
            )
        first[name] = index


def read_csv(path: Path, target: Any, features: Any, task: Any = "auto") -> Examples:
    """A header-row CSV of numbers; errors name the file, the column and the row."""
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL in it
        raise ConfigError(key="data.path", value=str(path), problem=f"is not a usable path ({getattr(exc, 'strerror', None) or exc})",
                          valid="the path of a CSV file") from None
    if is_dir:
        raise ConfigError(f"data.path={str(path)!r} is a directory; valid: the path of a CSV file in it")
    if not is_file:
        raise ConfigError(f"data.path={str(path)!r}: file not found (relative paths start in {Path.cwd()})")
    rows = _csv_rows(path)
    if not rows:
        raise ConfigError(f"data.path={str(path)!r}: the file is empty; it needs a header row")
    header_line, first_row = rows[0]
    header = [h.strip() for h in first_row]
    other = _other_delimiter(first_row)
    if other is not None:
        raise ConfigError(
            f"data.path={str(path)!r}: the file looks {other!r}-separated (header {first_row[0]!r}); "
            "backproplab reads comma-separated files: save it with ',' between the columns"
        )
    _repeated_column(path, header)
    if not isinstance(target, str) or target not in header:
        raise ConfigError(f"data.target={target!r} is not a column of {path.name}; available: {', '.join(header)}")
    if features is None:
        feature_cols = [h for h in header if h != target]
    else:
        if not isinstance(features, (list, tuple)) or not all(isinstance(f, str) for f in features):
            raise ConfigError(f"data.features={features!r} must be a list of column names, e.g. data.features=[x1,x2]")
        feature_cols = list(features)
        seen: set[str] = set()
        for f in feature_cols:
            if f not in header:
                raise ConfigError(f"data.features: {f!r} is not a column of {path.name}; available: {', '.join(header)}")
            if f in seen:
                raise ConfigError(f"data.features: {f!r} is listed twice; valid: each column once")
            seen.add(f)
        if target in feature_cols:
            raise ConfigError(f"data.features: the target column {target!r} cannot also be a feature")
    if not feature_cols:
        raise ConfigError(f"data.features: {path.name} has no column besides the target {target!r}")
    position = {name: index for index, name in enumerate(header)}  # names are distinct: checked above
    columns = [position[c] for c in feature_cols]
    target_index = position[target]
    X = np.empty((len(rows) - 1, len(columns)))
    labels: list[str] = []
    lines: list[int] = []
    for r, (line, row) in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise ConfigError(
                f"{path.name} row {r} (line {line}) has {len(row)} cells but the header has {len(header)} columns"
            )
        labels.append(row[target_index].strip())
        lines.append(line)
        for c, (idx, name) in enumerate(zip(columns, feature_cols)):
            cell = row[idx].strip()
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ConfigError(
                    f"{path.name} row {r} (line {line}), column {name!r}: {cell!r} is not a finite number"
                )
            X[r - 1, c] = value
    if X.shape[0] == 0:
        raise ConfigError(f"data.path={str(path)!r}: the file has a header but no rows")
    if task not in ("auto", "binary", "multiclass", "regression"):
        raise ConfigError(f"data.task={task!r} is invalid; valid: auto, binary, multiclass, regression")
    wording = Wording(
        f"column {target!r} of {path.name}",
        lambda r: f"{path.name} row {r} (line {lines[r - 1]}), column {target!r}",
        "data.task",
    )
    result = interpret(labels, task, wording)
    return Examples(X, result.y, feature_cols, result.classes, result.task, source=path.resolve())
