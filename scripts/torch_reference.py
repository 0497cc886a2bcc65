r"""Record PyTorch optimizer trajectories as test fixtures for ``fdl.optim.torch``.

PyTorch is never a dependency of fdl: this script is run by hand, in a separate virtual
environment, and its output is committed under ``tests/optim/fixtures/``::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python scripts/torch_reference.py

(on this project's machines the CPU wheel is on disk: ``pip install
/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl numpy``). It writes

* ``torch_float64.npz`` and ``torch_float32.npz``: for every configuration, the parameters
  before the first step and after every step, torch's loss at every step, and the optimizer's
  state buffers after the last step; plus the data and the initial parameters. Plain arrays
  only, so ``np.load(path, allow_pickle=False)`` reads them.
* ``torch_reference.json``: the configurations (torch's own argument names and values), the
  problems, the number of steps, the versions of torch, NumPy and Python, and the SHA-256 of
  each ``.npz``, which ``tests/optim/test_torch.py`` checks.

**The problem.** One parameter tree holds three problems side by side, and the loss is their
sum. Every optimizer here acts leaf by leaf (no global norms), so this is the same as running
them separately, with one compile per configuration:

* ``quadratic/x`` (4,): :math:`\tfrac12 \sum_i h_i (x_i - c_i)^2` with curvatures
  :math:`h = (10, 1, 0.1, 0.01)` (condition number 1000);
* ``rosenbrock/xy`` (2,): :math:`0.01\,[(1 - x)^2 + 100 (y - x^2)^2]` from :math:`(-1.2, 1)`
  (the classic banana valley, scaled by 1/100 so that one learning rate suits all three);
* ``logistic/w`` (5,) and ``logistic/b`` (): the mean logistic loss
  :math:`\operatorname{mean}(\log(1 + e^{z}) - y z)`, :math:`z = X w + b`, on 64 points
  drawn once with ``numpy.random.default_rng(SEED)``, written with ``logaddexp`` on both
  sides so torch and JAX compute the same function.

Every optimizer runs on the single-tensor code path (``foreach=False``), the reference loop.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch

SEED = 20240611
STEPS = 150
OUT = Path(__file__).resolve().parent.parent / "tests" / "optim" / "fixtures"

CURVATURES = np.array([10.0, 1.0, 0.1, 0.01])
CENTERS = np.array([0.5, -1.0, 2.0, -3.0])

# name -> (torch class name, torch keyword arguments). The names are torch's own.
CONFIGS = {
    "sgd_weight_decay": ("SGD", {"lr": 0.05, "weight_decay": 0.05}),
    "sgd_momentum_dampening": (
        "SGD",
        {"lr": 0.02, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
    ),
    "sgd_nesterov": (
        "SGD",
        {"lr": 0.02, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01},
    ),
    "rmsprop_plain": ("RMSprop", {"lr": 0.01}),
    "rmsprop_centered": ("RMSprop", {"lr": 0.005, "alpha": 0.98, "centered": True}),
    "rmsprop_momentum": (
        "RMSprop",
        {"lr": 0.002, "alpha": 0.95, "eps": 1e-6, "momentum": 0.9, "weight_decay": 0.01},
    ),
    "rmsprop_centered_momentum": (
        "RMSprop",
        {"lr": 0.002, "momentum": 0.5, "centered": True, "weight_decay": 0.02},
    ),
    "adagrad_lr_decay": ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
    "adagrad_accumulator_weight_decay": (
        "Adagrad",
        {"lr": 0.2, "lr_decay": 0.001, "initial_accumulator_value": 0.1, "weight_decay": 0.01, "eps": 1e-8},
    ),
    "adam_weight_decay": ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.05}),
    "adam_default": ("Adam", {"lr": 0.01}),
    "adamw": ("AdamW", {"lr": 0.01, "betas": (0.9, 0.95), "weight_decay": 0.1}),
}

# torch state buffer names recorded for each optimizer (besides the parameters).
BUFFERS = {
    "SGD": ("momentum_buffer",),
    "RMSprop": ("step", "square_avg", "grad_avg", "momentum_buffer"),
    "Adagrad": ("step", "sum"),
    "Adam": ("step", "exp_avg", "exp_avg_sq"),
    "AdamW": ("step", "exp_avg", "exp_avg_sq"),
}


def make_data() -> dict[str, np.ndarray]:
    """The logistic-regression data and the initial parameters, in float64."""
    rng = np.random.default_rng(SEED)
    features = rng.normal(size=(64, 5)) * np.array([1.0, 2.0, 0.5, 3.0, 1.0])  # (N, D)
    w_true = np.array([1.0, -0.5, 2.0, 0.3, -1.0])
    labels = (features @ w_true + 0.5 * rng.normal(size=64) > 0).astype(np.float64)  # (N,)
    return {
        "data/features": features,
        "data/labels": labels,
        "data/curvatures": CURVATURES,
        "data/centers": CENTERS,
        "init/quadratic/x": np.array([1.0, 1.0, -1.0, 1.0]),
        "init/rosenbrock/xy": np.array([-1.2, 1.0]),
        "init/logistic/w": 0.1 * rng.normal(size=5),
        "init/logistic/b": np.array(0.2),
    }


PARAM_NAMES = ("quadratic/x", "rosenbrock/xy", "logistic/w", "logistic/b")


def loss_fn(params: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> torch.Tensor:
    """The summed loss of the three problems (see the module docstring)."""
    x = params["quadratic/x"]
    quadratic = 0.5 * torch.sum(data["data/curvatures"] * (x - data["data/centers"]) ** 2)
    a, b = params["rosenbrock/xy"][0], params["rosenbrock/xy"][1]
    rosenbrock = 0.01 * ((1 - a) ** 2 + 100 * (b - a**2) ** 2)
    logits = data["data/features"] @ params["logistic/w"] + params["logistic/b"]  # (N,)
    labels = data["data/labels"]
    logistic = torch.mean(torch.logaddexp(logits, torch.zeros_like(logits)) - labels * logits)
    return quadratic + rosenbrock + logistic


def run(name: str, dtype: torch.dtype, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run one configuration for STEPS steps; return its recorded arrays."""
    class_name, kwargs = CONFIGS[name]
    data = {k: torch.tensor(v, dtype=dtype) for k, v in arrays.items() if k.startswith("data/")}
    params = {k: torch.tensor(arrays[f"init/{k}"], dtype=dtype, requires_grad=True) for k in PARAM_NAMES}
    optimizer = getattr(torch.optim, class_name)(list(params.values()), foreach=False, **kwargs)
    trajectory = {k: [params[k].detach().numpy().copy()] for k in PARAM_NAMES}
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn(params, data)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        for k in PARAM_NAMES:
            trajectory[k].append(params[k].detach().numpy().copy())
    out = {f"{name}/params/{k}": np.stack(v) for k, v in trajectory.items()}  # (STEPS + 1, ...)
    out[f"{name}/loss"] = np.asarray(losses, dtype=arrays["data/features"].dtype)  # (STEPS,)
    for k in PARAM_NAMES:
        state = optimizer.state[params[k]]
        for buffer in BUFFERS[class_name]:
            if buffer in state:
                out[f"{name}/state/{k}/{buffer}"] = np.asarray(state[buffer].detach().numpy())
    return out


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    base = make_data()
    hashes = {}
    for dtype, label in ((torch.float64, "float64"), (torch.float32, "float32")):
        arrays = {k: v.astype(label) for k, v in base.items()}
        record = dict(arrays)
        record["meta/torch_version"] = np.asarray(torch.__version__)
        record["meta/dtype"] = np.asarray(label)
        for name in CONFIGS:
            record.update(run(name, dtype, arrays))
        path = OUT / f"torch_{label}.npz"
        np.savez_compressed(path, **record)
        hashes[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    meta = {
        "generator": "scripts/torch_reference.py",
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "seed": SEED,
        "steps": STEPS,
        "param_names": list(PARAM_NAMES),
        "configs": {
            name: {"optimizer": f"torch.optim.{cls}", "kwargs": kwargs}
            for name, (cls, kwargs) in CONFIGS.items()
        },
        "problems": {
            "quadratic/x": "0.5 * sum(curvatures * (x - centers)**2)",
            "rosenbrock/xy": "0.01 * ((1 - x)**2 + 100 * (y - x**2)**2)",
            "logistic": "mean(logaddexp(z, 0) - labels * z), z = features @ w + b",
        },
        "sha256": hashes,
    }
    (OUT / "torch_reference.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {OUT / 'torch_reference.json'}")


if __name__ == "__main__":
    main()
