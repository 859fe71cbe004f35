"""Every built-in schedule with every built-in optimizer against torch.optim and its
lr_scheduler: the same network (same initial weights), the same batches in the same order, in
float64. Per-iteration losses, the learning rate of every epoch and the final parameters agree to
float64 round-off (the two libraries order a few floating-point operations differently).

torch is in the [test] extra pinned to the CPU wheel (torch==2.13.0); without it these tests are
skipped with that reason.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch equivalence tests need torch (pip install 'torch==2.13.0', as the [test] extra does)")

from backproplab.components.build import build_network, build_trainer  # noqa: E402

N, BATCH, EPOCHS, SEED = 24, 8, 8, 5
RTOL, ATOL = 1e-10, 1e-13

# backproplab spec -> torch optimizer factory with the same hyperparameters.
OPTIMIZERS = {
    "sgd": ({"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
            lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01)),
    "sgd_nesterov": ({"name": "sgd", "lr": 0.05, "momentum": 0.8, "nesterov": True},
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    "rmsprop": ({"name": "rmsprop", "lr": 0.01, "rho": 0.9, "eps": 1e-8},
                lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8)),
    "adagrad": ({"name": "adagrad", "lr": 0.1, "eps": 1e-10, "initial_accumulator": 0.1},
                lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10, initial_accumulator_value=0.1)),
    "adam": ({"name": "adam", "lr": 0.01, "weight_decay": 0.001},
             lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.001)),
    "adamw": ({"name": "adamw", "lr": 0.01, "weight_decay": 0.01},
              lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)),
}

# backproplab schedule spec -> (torch scheduler factory, whether its step takes the metric).
S = torch.optim.lr_scheduler
SCHEDULES = {
    "constant": ({"name": "constant"}, lambda o: S.ConstantLR(o, factor=1.0, total_iters=0), False),
    "step": ({"name": "step", "step_size": 2, "gamma": 0.5}, lambda o: S.StepLR(o, step_size=2, gamma=0.5), False),
    "multistep": ({"name": "multistep", "milestones": [2, 5, 5], "gamma": 0.3},
                  lambda o: S.MultiStepLR(o, milestones=[2, 5, 5], gamma=0.3), False),
    "exponential": ({"name": "exponential", "gamma": 0.8}, lambda o: S.ExponentialLR(o, gamma=0.8), False),
    # t_max 3 over 8 epochs: down, back up, and down again, as torch's does.
    "cosine": ({"name": "cosine", "t_max": 3, "eta_min": 0.001}, lambda o: S.CosineAnnealingLR(o, T_max=3, eta_min=0.001), False),
    "linear": ({"name": "linear", "start_factor": 0.25, "end_factor": 1.0, "total_iters": 3},
               lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=3), False),
    # A threshold that the losses miss often enough to reduce the rate in every case.
    "plateau": ({"name": "plateau", "factor": 0.5, "patience": 0, "threshold": 0.3, "cooldown": 1, "min_lr": 1e-4},
                lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=0, threshold=0.3, cooldown=1, min_lr=1e-4), True),
}


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, 3))
    y = np.tanh(X @ np.array([[0.5], [-1.0], [0.25]])) + 0.1 * rng.standard_normal((N, 1))
    X_val = rng.standard_normal((10, 3))
    y_val = np.tanh(X_val @ np.array([[0.5], [-1.0], [0.25]]))
    return X, y, X_val, y_val


def _ours(optimizer, schedule, validation):
    X, y, X_val, y_val = _data()
    net = build_network([3, 5, 1], activation="tanh", output_activation="identity", initializer="xavier_normal", seed=SEED)
    start = {k: v.copy() for k, v in net.params.items()}
    trainer = build_trainer(net, loss="mse", optimizer=optimizer, schedule=schedule, batch_size=BATCH, epochs=EPOCHS, seed=SEED)
    history = trainer.fit(X, y, validation_data=(X_val, y_val) if validation else None)
    return start, history, net.params


def _torch(start, make_optimizer, make_schedule, takes_metric, validation):
    X, y, X_val, y_val = (torch.tensor(a, dtype=torch.float64) for a in _data())
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
    with torch.no_grad():
        for layer, index in ((model[0], 1), (model[2], 2)):
            layer.weight.copy_(torch.tensor(start[f"W{index}"]))
            layer.bias.copy_(torch.tensor(start[f"b{index}"]))
    optimizer = make_optimizer(model.parameters())
    scheduler = make_schedule(optimizer)
    mse = torch.nn.MSELoss()
    rng = np.random.default_rng(SEED)  # the trainer's shuffling: one permutation per epoch
    losses, rates = [], []
    for _ in range(EPOCHS):
        rates.append(optimizer.param_groups[0]["lr"])
        order = rng.permutation(N)
        total = 0.0
        for begin in range(0, N, BATCH):
            idx = torch.as_tensor(order[begin : begin + BATCH])
            optimizer.zero_grad()
            loss = mse(model(X[idx]), y[idx])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            total += loss.item() * len(idx)
        if takes_metric:
            with torch.no_grad():
                metric = mse(model(X_val), y_val).item() if validation else total / N
            scheduler.step(metric)
        else:
            scheduler.step()
    params = {"W1": model[0].weight, "b1": model[0].bias, "W2": model[2].weight, "b2": model[2].bias}
    return losses, rates, {k: v.detach().numpy() for k, v in params.items()}


CASES = [(s, o, False) for s in SCHEDULES for o in OPTIMIZERS] + [("plateau", o, True) for o in OPTIMIZERS]


@pytest.mark.parametrize("schedule, optimizer, validation", CASES, ids=[f"{s}-{o}{'-val' if v else ''}" for s, o, v in CASES])
def test_schedule_and_optimizer_match_torch(schedule, optimizer, validation):
    our_spec, make_optimizer = OPTIMIZERS[optimizer]
    schedule_spec, make_schedule, takes_metric = SCHEDULES[schedule]
    start, history, params = _ours(dict(our_spec), dict(schedule_spec), validation)
    losses, rates, torch_params = _torch(start, make_optimizer, make_schedule, takes_metric, validation)

    np.testing.assert_allclose([e.lr for e in history.epochs], rates, rtol=RTOL, atol=0)
    np.testing.assert_allclose(history.losses, losses, rtol=RTOL, atol=ATOL)
    for name, value in torch_params.items():
        np.testing.assert_allclose(params[name], value, rtol=RTOL, atol=ATOL, err_msg=name)
    if schedule != "constant":
        assert len(set(rates)) > 1, "the schedule never changed the rate: the comparison would prove nothing"

