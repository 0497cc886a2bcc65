r"""fdl.optim.torch against trajectories recorded from torch.optim (PyTorch 2.13).

``scripts/torch_reference.py`` ran torch's SGD, RMSprop, Adagrad, Adam and AdamW for 150 steps
on one parameter tree holding three problems (an ill-conditioned quadratic, a scaled
Rosenbrock and a logistic regression; every optimizer here is elementwise, so the three run side
by side as if alone), in float64 and in float32, and saved the parameters after every step,
the loss at every step and the final state buffers to ``fixtures/``. Here the fdl variants start
from the same parameters, take gradients computed by JAX from the same loss, and must follow the
same trajectory at *every* step. torch is not needed to run these tests.

Tolerances (relative to each element's largest magnitude over the trajectory):

* float64, :data:`FLOAT64_RTOL` = 1e-12. Both sides evaluate the same update rule; the
  gradients (JAX's vs torch's autograd) and the update's operations round differently in the
  last bit (~1e-16), and 150 steps of these mostly contracting dynamics grow that only a little
  (measured: at most 3.3e-15, AdamW).
* float32, :data:`FLOAT32_RTOL` = 2e-5. The same last-bit differences at float32's 6e-8, plus
  two larger ones: fdl computes Adam's bias corrections :math:`1 - b^t` in float32 (optax's
  convention), torch in Python doubles, and :math:`\operatorname{fl}(0.999)` is off by 1.3e-8,
  which is 1.3e-5 of :math:`1 - 0.999` (measured: 8.3e-6, Adam with the default b2); and
  centered RMSprop's :math:`v - m^2` cancels (measured: 6.7e-6).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.optim import base, schedules
from fdl.optim import torch as fdl_torch

FIXTURES = Path(__file__).parent / "fixtures"
META = json.loads((FIXTURES / "torch_reference.json").read_text())
PARAM_NAMES = tuple(META["param_names"])
STEPS = META["steps"]

FLOAT64_RTOL = 1e-12
FLOAT32_RTOL = 2e-5
RTOL = {"float64": FLOAT64_RTOL, "float32": FLOAT32_RTOL}


def load(dtype: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"torch_{dtype}.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# ------------------------------------------------------------------- the torch -> fdl mapping


FACTORIES = {
    "torch.optim.SGD": fdl_torch.sgd,
    "torch.optim.RMSprop": fdl_torch.rmsprop,
    "torch.optim.Adagrad": fdl_torch.adagrad,
    "torch.optim.Adam": fdl_torch.adam,
    "torch.optim.AdamW": fdl_torch.adamw,
}


def fdl_kwargs(torch_kwargs: dict) -> dict:
    """torch's argument names to fdl.optim.torch's (the table in the module docstring)."""
    kwargs = dict(torch_kwargs)
    kwargs["learning_rate"] = kwargs.pop("lr")
    if "betas" in kwargs:
        kwargs["b1"], kwargs["b2"] = kwargs.pop("betas")
    return kwargs


def fdl_buffers(optimizer: str, kwargs: dict, state) -> dict[str, dict]:
    """fdl's state leaves under torch's buffer names: ``{buffer: {param name: array}}``
    (each leaf stacked over the steps)."""
    if optimizer == "torch.optim.SGD":
        return {"momentum_buffer": state[1].trace} if kwargs.get("momentum", 0) else {}
    if optimizer == "torch.optim.RMSprop":
        out = {"square_avg": state[1].nu}
        if kwargs.get("centered", False):
            out["grad_avg"] = state[1].mu
        if kwargs.get("momentum", 0):
            out["momentum_buffer"] = state[2].trace
        return out
    if optimizer == "torch.optim.Adagrad":
        out = {"sum": state[1].sum_of_squares}
        if kwargs.get("lr_decay", 0):  # the learning-rate schedule's count: steps taken
            out["step"] = {k: state[2].count for k in PARAM_NAMES}
        return out
    adam_state = state[0] if optimizer == "torch.optim.AdamW" else state[1]
    return {
        "exp_avg": adam_state.mu,
        "exp_avg_sq": adam_state.nu,
        "step": {k: adam_state.count for k in PARAM_NAMES},
    }


# --------------------------------------------------------------------------------- the problem


def loss_fn(params: dict, data: dict) -> jax.Array:
    """The loss of scripts/torch_reference.py, term by term."""
    x = params["quadratic/x"]
    quadratic = 0.5 * jnp.sum(data["data/curvatures"] * (x - data["data/centers"]) ** 2)
    a, b = params["rosenbrock/xy"][0], params["rosenbrock/xy"][1]
    rosenbrock = 0.01 * ((1 - a) ** 2 + 100 * (b - a**2) ** 2)
    logits = data["data/features"] @ params["logistic/w"] + params["logistic/b"]  # (N,)
    labels = data["data/labels"]
    logistic = jnp.mean(jnp.logaddexp(logits, jnp.zeros_like(logits)) - labels * logits)
    return quadratic + rosenbrock + logistic


def run_fdl(optimizer, arrays: dict[str, np.ndarray]):
    """Every step of ``optimizer`` in one jitted ``lax.scan``. Returns the params after each
    step, the loss before each step and the state after each step (leaves stacked over steps)."""
    data = {k: jnp.asarray(v) for k, v in arrays.items() if k.startswith("data/")}
    params = {k: jnp.asarray(arrays[f"init/{k}"]) for k in PARAM_NAMES}

    @jax.jit
    def trajectory(params):
        def step(carry, _):
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, data)
            updates, state = optimizer.update(grads, state, params)
            params = base.apply_updates(params, updates)
            return (params, state), (params, loss, state)

        carry = (params, optimizer.init(params))
        return jax.lax.scan(step, carry, None, length=STEPS)[1]

    return jax.device_get(trajectory(params))


def assert_close(fdl_values, torch_values, rtol: float, where: str, size=None) -> None:
    """``|fdl - torch| <= rtol * size`` elementwise, where ``size`` is the element's largest
    magnitude along the leading (step) axis in either library (or the given ``size``); reports
    the first bad index."""
    a = np.asarray(fdl_values, np.float64)
    b = np.asarray(torch_values, np.float64)
    assert a.shape == b.shape, f"{where}: shape {a.shape} (fdl) vs {b.shape} (torch)"
    if size is None:
        size = np.maximum(np.abs(a), np.abs(b))
        size = np.broadcast_to(size.max(axis=0, keepdims=True), size.shape)
    bad = np.abs(a - b) > rtol * size
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        worst = float(np.max(np.abs(a - b)[bad] / size[bad]))
        raise AssertionError(
            f"{where}: {int(bad.sum())} of {bad.size} values differ beyond rtol {rtol:g}; first "
            f"at index {first}: fdl {a[first]!r} vs torch {b[first]!r}; worst relative error "
            f"{worst:.3g}"
        )


# ------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(META["configs"]))
def test_every_step_matches_torch(name, dtype):
    config = META["configs"][name]
    arrays = load(dtype)
    kwargs = fdl_kwargs(config["kwargs"])
    rtol = RTOL[dtype]
    with jax.enable_x64(dtype == "float64"):
        optimizer = FACTORIES[config["optimizer"]](**kwargs)
        path, losses, states = run_fdl(optimizer, arrays)
    # The loss before every step: proves the problem (data, formula) is torch's.
    assert losses.dtype == np.dtype(dtype)
    assert_close(losses, arrays[f"{name}/loss"], rtol, f"{name} {dtype} loss")
    for k in PARAM_NAMES:
        recorded = arrays[f"{name}/params/{k}"]  # (STEPS + 1, ...), row 0 the start
        assert path[k].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(recorded[0], arrays[f"init/{k}"])
        assert_close(path[k], recorded[1:], rtol, f"{name} {dtype} params {k}")
    # torch saved its buffers after the last step only; an element is held to its largest
    # magnitude over fdl's trajectory of the same buffer (a buffer can end near zero).
    buffers = fdl_buffers(config["optimizer"], config["kwargs"], states)
    recorded = {key.rsplit("/", 1)[1] for key in arrays if key.startswith(f"{name}/state/")}
    # Every torch buffer has its fdl counterpart, except a step count fdl does not need
    # (RMSprop's; Adagrad's without lr_decay).
    assert recorded - {"step"} == set(buffers) - {"step"}, (recorded, set(buffers))
    for buffer, leaves in buffers.items():
        for k in PARAM_NAMES:
            reference = arrays[f"{name}/state/{k}/{buffer}"]
            history = np.asarray(leaves[k])  # (STEPS, ...)
            if buffer == "step":  # torch keeps the step count as a float tensor
                assert int(history[-1]) == int(reference) == STEPS
            else:
                size = np.maximum(np.abs(history).max(axis=0), np.abs(reference))
                where = f"{name} {dtype} {buffer} {k} after the last step"
                assert_close(history[-1], reference, rtol, where, size=size)


def test_fixtures_come_from_torch():
    assert META["generator"] == "scripts/torch_reference.py"
    assert re.fullmatch(r"2\.13\.\d+(\+\w+)?", META["torch_version"]), META["torch_version"]
    total = 0
    for dtype in ("float64", "float32"):
        path = FIXTURES / f"torch_{dtype}.npz"
        blob = path.read_bytes()
        total += len(blob)
        assert hashlib.sha256(blob).hexdigest() == META["sha256"][path.name]
        arrays = load(dtype)
        assert str(arrays["meta/torch_version"]) == META["torch_version"]
        assert str(arrays["meta/dtype"]) == dtype
        assert all(a.dtype == np.dtype(dtype) for k, a in arrays.items() if "/params/" in k)
    assert total < 1_000_000
    # What the recording covers (the brief of the fixtures).
    kinds = {
        (c["optimizer"], tuple(sorted(k for k in c["kwargs"] if k not in ("lr", "betas"))))
        for c in META["configs"].values()
    }
    covered = {
        ("torch.optim.SGD", ("dampening", "momentum", "weight_decay")),
        ("torch.optim.SGD", ("momentum", "nesterov", "weight_decay")),
        ("torch.optim.SGD", ("weight_decay",)),
        ("torch.optim.RMSprop", ()),
        ("torch.optim.RMSprop", ("alpha", "centered")),
        ("torch.optim.RMSprop", ("alpha", "eps", "momentum", "weight_decay")),
        ("torch.optim.Adagrad", ("lr_decay",)),
        ("torch.optim.Adagrad", ("eps", "initial_accumulator_value", "lr_decay", "weight_decay")),
        ("torch.optim.Adam", ("weight_decay",)),
        ("torch.optim.AdamW", ("weight_decay",)),
    }
    assert covered <= kinds


# ----------------------------------------------------- schedules: what constant-lr runs can't see


def torch_rmsprop_reference(grads, lrs, alpha, eps, momentum):
    """torch's RMSprop loop in NumPy (float64): the buffer holds g / (sqrt(v) + eps), and the
    learning rate multiplies it afterwards."""
    v = np.zeros_like(grads[0])
    buf = np.zeros_like(grads[0])
    steps = []
    for g, lr in zip(grads, lrs, strict=True):
        v = alpha * v + (1 - alpha) * g * g
        buf = momentum * buf + g / (np.sqrt(v) + eps)
        steps.append(-lr * buf)
    return np.stack(steps)


def test_rmsprop_momentum_holds_the_step_before_the_learning_rate(key):
    grads = np.asarray(jax.random.normal(key, (6, 3)), np.float64)
    lrs = [0.1, 0.1, 0.01, 0.01, 0.05, 0.05]
    with jax.enable_x64(True):
        sched = schedules.piecewise_constant_schedule(0.1, {2: 0.1, 4: 5.0})
        opt = fdl_torch.rmsprop(sched, alpha=0.9, eps=1e-3, momentum=0.8)
        state = opt.init(jnp.zeros(3))
        got = []
        for g in grads:
            u, state = opt.update(jnp.asarray(g), state)
            got.append(np.asarray(u))
    expected = torch_rmsprop_reference(grads, lrs, 0.9, 1e-3, 0.8)
    np.testing.assert_allclose(np.stack(got), expected, rtol=1e-14, atol=0)


def test_adagrad_lr_decay_composes_with_a_schedule():
    """lr_t = schedule(t - 1) / (1 + (t - 1) lr_decay), t = 1, 2, ... (torch's clr)."""
    grads = np.array([[1.0, -2.0], [0.5, 0.5], [-1.0, 3.0], [2.0, 0.0]])
    with jax.enable_x64(True):
        sched = schedules.linear_schedule(0.4, 0.1, transition_steps=3)
        opt = fdl_torch.adagrad(sched, lr_decay=0.5, initial_accumulator_value=0.25, eps=1e-6)
        state = opt.init(jnp.zeros(2))
        got = []
        for g in grads:
            u, state = opt.update(jnp.asarray(g), state)
            got.append(np.asarray(u))
    total = np.full(2, 0.25)
    expected = []
    for t, g in enumerate(grads, start=1):
        total = total + g * g
        lr = (0.4 + (0.1 - 0.4) * min(t - 1, 3) / 3) / (1 + (t - 1) * 0.5)
        expected.append(-lr * g / (np.sqrt(total) + 1e-6))
    np.testing.assert_allclose(np.stack(got), np.stack(expected), rtol=1e-14, atol=0)


def test_dampened_trace_first_step_is_undamped():
    opt = fdl_torch.dampened_trace(momentum=0.5, dampening=0.75)
    state = opt.init(jnp.zeros(2))
    outs = []
    for g in ([4.0, -8.0], [2.0, 2.0], [0.0, 4.0]):
        u, state = opt.update(jnp.asarray(g, jnp.float32), state)
        outs.append(np.asarray(u).tolist())
    # b1 = g1; b2 = 0.5 b1 + 0.25 g2; b3 = 0.5 b2 + 0.25 g3 (all exact in binary).
    assert outs == [[4.0, -8.0], [2.5, -3.5], [1.25, -0.75]]
    assert int(state.count) == 3


# ------------------------------------------------------------------------------------ contracts


WITH_DECAY = [
    ("sgd", lambda: fdl_torch.sgd(0.1, momentum=0.9, weight_decay=0.01)),
    ("rmsprop", lambda: fdl_torch.rmsprop(weight_decay=0.01)),
    ("adagrad", lambda: fdl_torch.adagrad(weight_decay=0.01)),
    ("adam", lambda: fdl_torch.adam(weight_decay=0.01)),
    ("adamw", lambda: fdl_torch.adamw()),
]


@pytest.mark.parametrize("name, make", WITH_DECAY, ids=[n for n, _ in WITH_DECAY])
def test_weight_decay_without_params_raises(name, make):
    opt = make()
    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    message = (
        f"fdl.optim.torch.{name} with weight_decay=0.01 adds weight_decay * params to the "
        "updates, so it needs the parameters: call `update(grads, state, params)`"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        opt.update(params, state)
    updates, _ = opt.update(params, state, params)  # with them it works
    assert jax.tree.structure(updates) == jax.tree.structure(params)


@pytest.mark.parametrize(
    "make",
    [
        lambda wd: fdl_torch.sgd(0.1, momentum=0.9, dampening=0.1, weight_decay=wd),
        lambda wd: fdl_torch.rmsprop(momentum=0.5, centered=True, weight_decay=wd),
        lambda wd: fdl_torch.adagrad(lr_decay=0.1, weight_decay=wd),
        lambda wd: fdl_torch.adam(weight_decay=wd),
        lambda wd: fdl_torch.adamw(weight_decay=wd),
    ],
)
def test_state_structure_does_not_depend_on_weight_decay(make):
    params = {"w": jnp.ones(2), "b": jnp.zeros(())}
    without, with_decay = make(0.0), make(0.1)
    assert jax.tree.structure(without.init(params)) == jax.tree.structure(with_decay.init(params))
    updates, _ = without.update(params, without.init(params))  # no params needed at 0
    assert jax.tree.structure(updates) == jax.tree.structure(params)


ERRORS = [
    (lambda: fdl_torch.sgd(-0.1), "`learning_rate` must be a non-negative number"),
    (lambda: fdl_torch.sgd(0.1, momentum=1.0), "`momentum` must be in [0, 1), got 1.0"),
    (
        lambda: fdl_torch.sgd(0.1, momentum=0.9, dampening=1.5),
        "`dampening` must be in [0, 1], got 1.5",
    ),
    (
        lambda: fdl_torch.sgd(0.1, nesterov=True),
        "Nesterov momentum requires a momentum > 0 and zero dampening (as in torch), got "
        "momentum=0.0, dampening=0.0",
    ),
    (
        lambda: fdl_torch.sgd(0.1, momentum=0.9, dampening=0.1, nesterov=True),
        "Nesterov momentum requires a momentum > 0 and zero dampening",
    ),
    (lambda: fdl_torch.sgd(0.1, weight_decay=-1.0), "`weight_decay` must be a non-negative"),
    (lambda: fdl_torch.rmsprop(alpha=1.0), "`alpha` must be in [0, 1), got 1.0"),
    (lambda: fdl_torch.rmsprop(eps=-1e-8), "`eps` must be a non-negative number, got -1e-08"),
    (lambda: fdl_torch.rmsprop(momentum=-0.5), "`momentum` must be in [0, 1), got -0.5"),
    (lambda: fdl_torch.adagrad(lr_decay=-0.1), "`lr_decay` must be a non-negative number"),
    (
        lambda: fdl_torch.adagrad(initial_accumulator_value=-1.0),
        "`initial_accumulator_value` must be a non-negative number, got -1.0",
    ),
    (lambda: fdl_torch.adam(b1=1.0), "`b1` must be in [0, 1), got 1.0"),
    (lambda: fdl_torch.adamw(b2=-0.1), "`b2` must be in [0, 1), got -0.1"),
    (lambda: fdl_torch.adamw(learning_rate=-1.0), "`learning_rate` must be a non-negative"),
    (lambda: fdl_torch.dampened_trace(0.5, dampening=-0.1), "`dampening` must be in [0, 1]"),
    (lambda: fdl_torch.scale_by_rss(eps=-1.0), "`eps` must be a non-negative number, got -1.0"),
]


@pytest.mark.parametrize("make, message", ERRORS, ids=[f"error{i}" for i in range(len(ERRORS))])
def test_invalid_arguments_raise_naming_the_argument(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
