"""Core speed, measured against minimal hand-written numpy loops in the same process.

Two cases:

* large: [784, 256, 128, 10], relu hidden, softmax output, cross_entropy, sgd, batch 128,
  float32, synthetic data. Throughput (samples/s) of ``Trainer.fit`` vs a hand-written loop
  doing the same maths (shuffle, forward, loss value, softmax+CE gradient, backward, SGD
  update). Target: ratio >= 0.95.
* worked example: 3-4-1 sigmoid/bce/sgd, one example per iteration. Time per iteration of
  ``Trainer.fit`` vs the hand-written loop. Target: ratio <= 2.

Repetitions of the two implementations are interleaved, so a noisy neighbour on a shared
machine slows both alike; the best of several repetitions is the figure compared (the median is
printed too). This is a script, not a test: wall-clock numbers never decide a test.

    python benchmarks/bench_core.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

import backproplab as bp


# --------------------------------------------------------------------------------------------
# Large network


def large_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=n)
    return X, y


def large_backproplab(X: np.ndarray, y: np.ndarray, epochs: int) -> float:
    net = bp.build_network(
        [784, 256, 128, 10], "relu", "softmax", "he_normal", seed=0, dtype="float32"
    )
    trainer = bp.build_trainer(
        net, "cross_entropy", {"name": "sgd", "lr": 0.01}, batch_size=128, epochs=epochs, seed=0
    )
    t0 = time.perf_counter()
    trainer.fit(X, y)
    return time.perf_counter() - t0


def large_by_hand(X: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """The same maths written out in numpy with no framework around it."""
    rng = np.random.default_rng(0)
    sizes = [784, 256, 128, 10]
    W = [
        (rng.standard_normal((sizes[l], sizes[l - 1])) * np.sqrt(2.0 / sizes[l - 1])).astype(np.float32)
        for l in range(1, 4)
    ]
    b = [np.zeros(sizes[l], dtype=np.float32) for l in range(1, 4)]
    lr = np.float32(0.01)
    t0 = time.perf_counter()
    Y = np.eye(10, dtype=np.float32)[y]
    n = X.shape[0]
    shuffle = np.random.default_rng(0)
    for _ in range(epochs):
        order = shuffle.permutation(n)
        for start in range(0, n, 128):
            idx = order[start : start + 128]
            xb, yb = X[idx], Y[idx]
            m = xb.shape[0]
            z1 = xb @ W[0].T + b[0]
            a1 = np.maximum(z1, 0)
            z2 = a1 @ W[1].T + b[1]
            a2 = np.maximum(z2, 0)
            z3 = a2 @ W[2].T + b[2]
            e = np.exp(z3 - z3.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            loss = -np.sum(yb * np.log(np.maximum(p, 1e-7))) / m
            if not np.isfinite(loss):
                raise FloatingPointError(loss)
            d3 = (p - yb) / m
            d2 = (d3 @ W[2]) * (z2 > 0)
            d1 = (d2 @ W[1]) * (z1 > 0)
            grads = [(d1.T @ xb, d1.sum(0)), (d2.T @ a1, d2.sum(0)), (d3.T @ a2, d3.sum(0))]
            for l, (gW, gb) in enumerate(grads):
                W[l] -= lr * gW
                b[l] -= lr * gb
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# Worked example, one example per iteration

X1 = np.array([[7.0, 8.0, 10.0]])
Y1 = np.array([[1.0]])


def worked_backproplab(iterations: int) -> float:
    net = bp.build_network([3, 4, 1], "sigmoid", initializer={"name": "legacy_randn", "scale": 0.1, "seed": 3})
    trainer = bp.build_trainer(net, "bce", {"name": "sgd", "lr": 0.5}, batch_size=1, epochs=iterations, shuffle=False)
    t0 = time.perf_counter()
    trainer.fit(X1, Y1)
    return time.perf_counter() - t0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def worked_by_hand(iterations: int) -> float:
    rs = np.random.RandomState(3)
    W1, W2 = rs.randn(4, 3) * 0.1, rs.randn(1, 4) * 0.1
    b1, b2 = np.zeros(4), np.zeros(1)
    x, y, lr = X1, Y1, 0.5
    t0 = time.perf_counter()
    for _ in range(iterations):
        z1 = x @ W1.T + b1
        a1 = _sigmoid(z1)
        z2 = a1 @ W2.T + b2
        y_hat = _sigmoid(z2)
        loss = float(-np.mean(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat)))
        if not np.isfinite(loss):
            raise FloatingPointError(loss)
        d2 = y_hat - y  # sigmoid + bce, batch of one
        d1 = (d2 @ W2) * a1 * (1 - a1)
        W2 -= lr * (d2.T @ a1)
        b2 -= lr * d2.sum(0)
        W1 -= lr * (d1.T @ x)
        b1 -= lr * d1.sum(0)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------


def interleaved(a, b, reps: int) -> tuple[list[float], list[float]]:
    ta, tb = [], []
    for i in range(reps):
        # Alternate who goes first, so neither always runs on a warmer cache.
        if i % 2:
            tb.append(b()); ta.append(a())
        else:
            ta.append(a()); tb.append(b())
    return ta, tb


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} threads={i.get('num_threads')}"
        for i in threadpool_info()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repetitions, for a smoke run")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of each case (default 15, quick 3)")
    parser.add_argument("--threads", type=int, default=None, help="limit BLAS threads (threadpoolctl); default: as configured")
    args = parser.parse_args()
    reps = args.reps or (3 if args.quick else 15)
    # Two epochs per fit: the one-off input validation is amortised as in real training.
    n, epochs = (4096, 1) if args.quick else (8192, 2)
    iterations = 2000 if args.quick else 5000

    limiter = None
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=args.threads, user_api="blas")

    print(f"python {platform.python_version()}, numpy {np.__version__}, backproplab {bp.__version__}")
    print(f"BLAS: {blas_info()}")

    X, y = large_data(n)
    large_backproplab(X[:512], y[:512], 1)  # warm up BLAS threads and imports
    large_by_hand(X[:512], y[:512], 1)
    t_bp, t_hand = interleaved(lambda: large_backproplab(X, y, epochs), lambda: large_by_hand(X, y, epochs), reps)
    samples = n * epochs

    worked_backproplab(100)
    worked_by_hand(100)
    w_bp, w_hand = interleaved(lambda: worked_backproplab(iterations), lambda: worked_by_hand(iterations), reps)

    # Two estimates of each ratio: best against best, and the median over repetitions of the
    # ratio of a back-to-back pair (robust when a neighbour's load comes and goes).
    large_best = min(t_hand) / min(t_bp)  # throughput ratio = inverse time ratio
    large_paired = statistics.median(h / b for h, b in zip(t_hand, t_bp))
    worked_best = min(w_bp) / min(w_hand)
    worked_paired = statistics.median(b / h for h, b in zip(w_hand, w_bp))

    print(f"{reps} interleaved repetitions of {samples} samples (large) and {iterations} iterations (worked example)")
    print()
    print(f"{'case':<44} {'best':>12} {'median':>12}")
    print(f"{'large [784,256,128,10] f32 b128, backproplab':<44} {samples / min(t_bp):>9,.0f} /s {samples / statistics.median(t_bp):>9,.0f} /s")
    print(f"{'large [784,256,128,10] f32 b128, by hand':<44} {samples / min(t_hand):>9,.0f} /s {samples / statistics.median(t_hand):>9,.0f} /s")
    print(f"{'worked example 3-4-1 b1, backproplab':<44} {1e6 * min(w_bp) / iterations:>9.1f} us {1e6 * statistics.median(w_bp) / iterations:>9.1f} us")
    print(f"{'worked example 3-4-1 b1, by hand':<44} {1e6 * min(w_hand) / iterations:>9.1f} us {1e6 * statistics.median(w_hand) / iterations:>9.1f} us")
    print()
    print(f"large network throughput, backproplab / by hand: {large_best:.3f}x best, {large_paired:.3f}x median paired  (target >= 0.95x)")
    print(f"worked example time per iteration, backproplab / by hand: {worked_best:.2f}x best, {worked_paired:.2f}x median paired  (target <= 2x)")
    if limiter is not None:
        limiter.restore_original_limits()


if __name__ == "__main__":
    main()
