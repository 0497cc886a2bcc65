"""Tests for fdl.optim.schedules: every step against optax 0.2.8 and a NumPy formula.

Each case tabulates a schedule at every step 0..N (before ``transition_begin``, on every
boundary, and past the end), under ``jax.jit`` with an int32 count, and compares it with

* optax's schedule of the same name and arguments, evaluated op by op at the same counts (not
  jitted: under ``jit`` optax 0.2.8's polynomial and staircase schedules go wrong, see the last
  tests): fdl follows optax's formulas, so the two agree to :data:`OPTAX_RTOL`;
* the formula of the docstring written out in NumPy float64: fdl computes in float32, so the two
  agree to float32 rounding, :data:`FORMULA_RTOL` (and to 1e-12 in float64 under x64).
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim import base
from fdl.optim import schedules as fdl
from tests.optim.helpers import optax_promotion

# fdl (jitted) and optax (op by op) evaluate the same formulas, but XLA rewrites x / T as
# x * fl(1/T) and fuses multiply-adds in fdl's compiled program, and fdl computes (T - tau) / T
# where optax computes 1 - tau / T: each costs about one float32 rounding at the scale of the
# schedule (its largest |value|), so 2 ulp of that scale (2 * 2^-23 ~ 2.4e-7).
OPTAX_RTOL = 2 * float(np.finfo(np.float32).eps)
# Against the float64 formula: each schedule rounds at most ~6 float32 operations (a cos or pow
# adds ~2 ulp), so 8 ulp of the schedule's scale (its largest |value|), 8 * 2^-23 ~ 1e-6.
FORMULA_RTOL = 8 * float(np.finfo(np.float32).eps)


# ------------------------------------------------------------------------- NumPy formulas


def np_polynomial(t, init, end, power, steps, begin=0):
    tau = np.clip(t - begin, 0, steps)
    return (init - end) * (1 - tau / steps) ** power + end


def np_exponential(t, init, steps, rate, begin=0, staircase=False, end=None):
    e = (t - begin) / steps
    if staircase:
        e = np.floor(e)
    value = np.where(t - begin <= 0, init, init * rate**e)
    if end is not None:
        value = np.maximum(value, end) if rate < 1 else np.minimum(value, end)
    return value


def np_cosine(t, init, steps, alpha=0.0, exponent=1.0):
    c = 0.5 * (1 + np.cos(np.pi * np.minimum(t, steps) / steps))
    return init * ((1 - alpha) * c**exponent + alpha)


def np_warmup_cosine(t, init, peak, warmup, steps, end=0.0, exponent=1.0):
    rise = init + (peak - init) * np.clip(t, 0, warmup) / max(warmup, 1)
    alpha = end / peak if peak != 0 else 0.0
    fall = np_cosine(t - warmup, peak, steps - warmup, alpha, exponent)
    return np.where(t < warmup, rise, fall)


def np_piecewise(t, init, boundaries_and_scales):
    value = np.full(t.shape, float(init))
    for b, s in boundaries_and_scales.items():
        value = np.where(t >= b, value * s, value)
    return value


def np_interpolate(t, kind, init, phases):
    """The piecewise interpolation written out: ``phases`` ``[(boundary, scale), ...]`` sorted,
    values the running products, linear or cosine between consecutive boundaries."""
    bounds = [0] + [b for b, _ in phases]
    values = [init]
    for _, scale in phases:
        values.append(values[-1] * scale)
    out = np.full(t.shape, values[-1])
    for k in reversed(range(len(phases))):
        a, b, va, vb = bounds[k], bounds[k + 1], values[k], values[k + 1]
        p = (t - a) / max(b - a, 1)
        interp = va + (vb - va) * p if kind == "linear" else vb + 0.5 * (va - vb) * (1 + np.cos(np.pi * p))
        out = np.where((t >= a) & (t < b), interp, out)
    return out


def np_sgdr(t, cycles):
    out, start = np.zeros(t.shape), 0
    for c in cycles:
        inside = t >= start
        warm = np_warmup_cosine(
            t - start,
            c["init_value"],
            c["peak_value"],
            c["warmup_steps"],
            c["decay_steps"],
            c.get("end_value", 0.0),
        )
        out = np.where(inside, warm, out)
        start += c["decay_steps"]
    return out


SGDR_CYCLES = [
    dict(init_value=0.0, peak_value=1.6, warmup_steps=3, decay_steps=12, end_value=0.1),
    dict(init_value=0.1, peak_value=0.8, warmup_steps=2, decay_steps=9),
    dict(init_value=0.0, peak_value=0.4, warmup_steps=0, decay_steps=6),
]

# ------------------------------------------------------------------------------ the table

WARMUP_PARTS = dict(init_value=0.0, end_value=1.0, transition_steps=5)
EXP_PARTS = dict(init_value=1.0, transition_steps=3, decay_rate=0.5)

# (id, fdl/optax name, kwargs, NumPy formula of t, number of steps N tabulated as 0..N)
CASES = [
    ("constant", "constant_schedule", dict(value=0.3), lambda t: np.full(t.shape, 0.3), 5),
    (
        "linear",
        "linear_schedule",
        dict(init_value=1.0, end_value=0.01, transition_steps=10, transition_begin=3),
        lambda t: np_polynomial(t, 1.0, 0.01, 1, 10, 3),
        18,
    ),
    (
        "linear-rising",
        "linear_schedule",
        dict(init_value=0.0, end_value=2e-3, transition_steps=7),
        lambda t: np_polynomial(t, 0.0, 2e-3, 1, 7),
        12,
    ),
    (
        "polynomial-p2",
        "polynomial_schedule",
        dict(init_value=1.0, end_value=0.01, power=2, transition_steps=12, transition_begin=4),
        lambda t: np_polynomial(t, 1.0, 0.01, 2, 12, 4),
        20,
    ),
    (
        "polynomial-p0.5",
        "polynomial_schedule",
        dict(init_value=0.5, end_value=0.1, power=0.5, transition_steps=9),
        lambda t: np_polynomial(t, 0.5, 0.1, 0.5, 9),
        12,
    ),
    (
        "exponential",
        "exponential_decay",
        dict(init_value=0.1, transition_steps=4, decay_rate=0.7, transition_begin=2),
        lambda t: np_exponential(t, 0.1, 4, 0.7, 2),
        30,
    ),
    (
        "exponential-staircase-floor",
        "exponential_decay",
        dict(init_value=1.0, transition_steps=3, decay_rate=0.5, staircase=True, end_value=0.06),
        lambda t: np_exponential(t, 1.0, 3, 0.5, staircase=True, end=0.06),
        20,
    ),
    (
        "exponential-growth-ceiling",
        "exponential_decay",
        dict(init_value=0.01, transition_steps=2, decay_rate=1.5, end_value=0.05),
        lambda t: np_exponential(t, 0.01, 2, 1.5, end=0.05),
        15,
    ),
    (
        "cosine",
        "cosine_decay_schedule",
        dict(init_value=0.2, decay_steps=16),
        lambda t: np_cosine(t, 0.2, 16),
        20,
    ),
    (
        "cosine-alpha-exponent",
        "cosine_decay_schedule",
        dict(init_value=1.0, decay_steps=10, alpha=0.1, exponent=2.0),
        lambda t: np_cosine(t, 1.0, 10, 0.1, 2.0),
        14,
    ),
    (
        "warmup-cosine",
        "warmup_cosine_decay_schedule",
        dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=25, end_value=0.05),
        lambda t: np_warmup_cosine(t, 0.0, 1.0, 5, 25, 0.05),
        30,
    ),
    (
        "warmup-cosine-exponent",
        "warmup_cosine_decay_schedule",
        dict(init_value=1e-4, peak_value=3e-3, warmup_steps=3, decay_steps=12, exponent=1.5),
        lambda t: np_warmup_cosine(t, 1e-4, 3e-3, 3, 12, 0.0, 1.5),
        15,
    ),
    (
        "warmup-cosine-no-warmup",
        "warmup_cosine_decay_schedule",
        dict(init_value=0.5, peak_value=1.0, warmup_steps=0, decay_steps=8),
        lambda t: np_cosine(t, 1.0, 8),
        10,
    ),
    (
        "piecewise",
        "piecewise_constant_schedule",
        dict(init_value=0.1, boundaries_and_scales={10: 0.1, 3: 0.5, 7: 2.0}),
        lambda t: np_piecewise(t, 0.1, {3: 0.5, 7: 2.0, 10: 0.1}),
        13,
    ),
    (
        "piecewise-none",
        "piecewise_constant_schedule",
        dict(init_value=0.7),
        lambda t: np.full(t.shape, 0.7),
        3,
    ),
    (
        "warmup-constant",
        "warmup_constant_schedule",
        dict(init_value=1e-3, peak_value=0.3, warmup_steps=7),
        lambda t: np_polynomial(t, 1e-3, 0.3, 1, 7),
        12,
    ),
    (
        "warmup-exponential",
        "warmup_exponential_decay_schedule",
        dict(init_value=0.0, peak_value=0.5, warmup_steps=4, transition_steps=3, decay_rate=0.6),
        lambda t: np.where(t < 4, np_polynomial(t, 0.0, 0.5, 1, 4), np_exponential(t - 4, 0.5, 3, 0.6)),
        25,
    ),
    (
        "warmup-exponential-staircase-begin-floor",
        "warmup_exponential_decay_schedule",
        dict(
            init_value=0.01,
            peak_value=1.0,
            warmup_steps=3,
            transition_steps=2,
            decay_rate=0.5,
            transition_begin=2,
            staircase=True,
            end_value=0.1,
        ),
        lambda t: np.where(
            t < 3, np_polynomial(t, 0.01, 1.0, 1, 3), np_exponential(t - 3, 1.0, 2, 0.5, 2, True, 0.1)
        ),
        20,
    ),
    (
        "interpolate-linear",
        "piecewise_interpolate_schedule",
        dict(interpolate_type="linear", init_value=0.2, boundaries_and_scales={9: 0.25, 4: 1.5, 12: 2.0}),
        lambda t: np_interpolate(t, "linear", 0.2, [(4, 1.5), (9, 0.25), (12, 2.0)]),
        15,
    ),
    (
        "interpolate-cosine-from-0",
        "piecewise_interpolate_schedule",
        dict(interpolate_type="cosine", init_value=3.0, boundaries_and_scales={0: 0.5, 6: 0.1, 7: 4.0}),
        lambda t: np_interpolate(t, "cosine", 3.0, [(0, 0.5), (6, 0.1), (7, 4.0)]),
        10,
    ),
    (
        "interpolate-none",
        "piecewise_interpolate_schedule",
        dict(interpolate_type="cosine", init_value=0.7),
        lambda t: np.full(t.shape, 0.7),
        3,
    ),
    (
        "onecycle-linear",
        "linear_onecycle_schedule",
        dict(transition_steps=23, peak_value=0.4),
        lambda t: np_interpolate(t, "linear", 0.4 / 25, [(6, 25.0), (19, 1 / 25), (23, 1e-4)]),
        26,
    ),
    (
        "onecycle-linear-args",
        "linear_onecycle_schedule",
        dict(
            transition_steps=10,
            peak_value=2.0,
            pct_start=0.4,
            pct_final=0.7,
            div_factor=5.0,
            final_div_factor=50.0,
        ),
        lambda t: np_interpolate(t, "linear", 0.4, [(4, 5.0), (7, 0.2), (10, 0.02)]),
        12,
    ),
    (
        "onecycle-cosine",
        "cosine_onecycle_schedule",
        dict(transition_steps=17, peak_value=0.1),
        lambda t: np_interpolate(t, "cosine", 0.1 / 25, [(5, 25.0), (17, 1 / (25 * 1e4))]),
        19,
    ),
    (
        "onecycle-cosine-args",
        "cosine_onecycle_schedule",
        dict(transition_steps=8, peak_value=1.0, pct_start=0.5, div_factor=10.0, final_div_factor=4.0),
        lambda t: np_interpolate(t, "cosine", 0.1, [(4, 10.0), (8, 1 / 40)]),
        10,
    ),
    ("sgdr", "sgdr_schedule", dict(cosine_kwargs=SGDR_CYCLES), lambda t: np_sgdr(t, SGDR_CYCLES), 30),
]


# optax 0.2.8's interpolating schedules take a scalar count only (a dot with an indicator of the
# count's interval); fdl's take any array of counts.
OPTAX_SCALAR_COUNT_ONLY = {
    "piecewise_interpolate_schedule",
    "linear_onecycle_schedule",
    "cosine_onecycle_schedule",
}


def _build(module, name, kwargs):
    """The schedule ``name`` of ``module`` (fdl's or optax's) with ``kwargs``."""
    return getattr(module, name)(**kwargs)


def _tabulate(schedule, n):
    """``schedule`` at every step 0..n under jit, from an int32 count array."""
    counts = jnp.arange(n + 1, dtype=jnp.int32)
    return np.asarray(jax.jit(schedule)(counts))


def _assert_formula(values, expected, where):
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    np.testing.assert_allclose(values, expected, rtol=0, atol=FORMULA_RTOL * scale, err_msg=where)


@pytest.mark.parametrize("case_id, name, kwargs, formula, n", CASES, ids=[c[0] for c in CASES])
def test_every_step_matches_optax_and_formula(case_id, name, kwargs, formula, n):
    values = _tabulate(_build(fdl, name, kwargs), n)
    assert values.dtype == np.float32 and values.shape == (n + 1,)
    with optax_promotion():
        reference = _build(optax, name, kwargs)
        if name in OPTAX_SCALAR_COUNT_ONLY:  # optax's takes one count at a time
            reference = np.array([reference(jnp.int32(t)) for t in range(n + 1)], np.float32)
        else:
            reference = np.asarray(reference(jnp.arange(n + 1, dtype=jnp.int32)), np.float32)
    scale = float(np.max(np.abs(reference)))
    np.testing.assert_allclose(values, reference, rtol=0, atol=OPTAX_RTOL * scale, err_msg=case_id)
    _assert_formula(values, formula(np.arange(n + 1, dtype=np.float64)), case_id)


@pytest.mark.parametrize("case_id, name, kwargs, formula, n", CASES, ids=[c[0] for c in CASES])
def test_float64_under_x64_matches_formula(case_id, name, kwargs, formula, n):
    with jax.enable_x64(True):
        values = _tabulate(_build(fdl, name, kwargs), n)
    assert values.dtype == np.float64
    expected = formula(np.arange(n + 1, dtype=np.float64))
    # float64 rounding of the same ~6 operations (a few ulp of 2^-52 ~ 2.2e-16).
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-14 * scale, err_msg=case_id)


def test_scalar_count_in_scan_matches_tabulation():
    """As an optimizer calls it: one int32 scalar per step, inside ``lax.scan``, under jit."""
    schedule = fdl.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=4, decay_steps=20)

    @jax.jit
    def run():
        def step(count, _):
            return base.safe_increment(count), schedule(count)

        return jax.lax.scan(step, jnp.zeros([], jnp.int32), None, length=25)[1]

    stepped = np.asarray(run())
    np.testing.assert_array_equal(stepped, _tabulate(schedule, 24))
    _assert_formula(stepped, np_warmup_cosine(np.arange(25.0), 0.0, 1.0, 4, 20), "scan")


def test_python_int_count_gives_a_float_array():
    value = fdl.cosine_decay_schedule(1.0, decay_steps=4)(2)
    assert isinstance(value, jax.Array) and value.dtype == jnp.float32 and value.shape == ()
    assert float(value) == pytest.approx(0.5, rel=1e-7)


def test_join_schedules_restarts_each_count_at_its_boundary():
    warm = fdl.linear_schedule(**WARMUP_PARTS)
    decay = fdl.exponential_decay(**EXP_PARTS)
    flat = fdl.constant_schedule(0.02)
    joined = fdl.join_schedules([warm, decay, flat], [5, 11])
    values = _tabulate(joined, 15)
    t = np.arange(16.0)
    expected = np.where(
        t < 5,
        np_polynomial(t, 0.0, 1.0, 1, 5),
        np.where(t < 11, np_exponential(t - 5, 1.0, 3, 0.5), 0.02),
    )
    _assert_formula(values, expected, "join")
    with optax_promotion():
        reference = optax.join_schedules(
            [
                optax.linear_schedule(**WARMUP_PARTS),
                optax.exponential_decay(**EXP_PARTS),
                optax.constant_schedule(0.02),
            ],
            [5, 11],
        )(jnp.arange(16, dtype=jnp.int32))
    np.testing.assert_allclose(values, np.asarray(reference), rtol=0, atol=OPTAX_RTOL * 1.0)


@pytest.mark.parametrize("steps", [0, -3])
def test_non_positive_transition_steps_hold_init_value_as_optax(steps):
    for fdl_sched, optax_sched in [
        (fdl.linear_schedule(0.4, 0.0, steps), optax.linear_schedule(0.4, 0.0, steps)),
        (
            fdl.polynomial_schedule(0.4, 0.0, 2, steps),
            optax.polynomial_schedule(0.4, 0.0, 2, steps),
        ),
        (fdl.exponential_decay(0.4, steps, 0.5), optax.exponential_decay(0.4, steps, 0.5)),
    ]:
        values = _tabulate(fdl_sched, 6)
        np.testing.assert_array_equal(values, np.full(7, 0.4, np.float32))
        assert float(optax_sched(3)) == pytest.approx(0.4)


@pytest.mark.parametrize("staircase", [False, True])
def test_a_zero_decay_rate_holds_init_value_as_optax(staircase):
    fdl_sched = fdl.exponential_decay(0.4, 2, 0.0, staircase=staircase)
    optax_sched = optax.exponential_decay(0.4, 2, 0.0, staircase=staircase)
    values = _tabulate(fdl_sched, 6)
    np.testing.assert_array_equal(values, np.full(7, 0.4, np.float32))
    np.testing.assert_array_equal(values, np.asarray([optax_sched(t) for t in range(7)], np.float32))


def test_numpy_step_counts_are_accepted_under_strict_promotion():
    """NumPy integers (say, from a config array) are not weakly typed; fdl converts them."""
    sched = fdl.polynomial_schedule(1.0, 0.0, 2, np.int64(4), np.int64(1))
    np.testing.assert_allclose(
        _tabulate(sched, 6), np_polynomial(np.arange(7.0), 1.0, 0.0, 2, 4, 1), rtol=1e-6
    )
    staircase = fdl.exponential_decay(1.0, np.int32(2), 0.5, np.int32(1), staircase=True)
    np.testing.assert_array_equal(_tabulate(staircase, 5), [1.0, 1.0, 1.0, 0.5, 0.5, 0.25])


def test_values_given_as_arrays_set_the_dtype():
    sched = fdl.cosine_decay_schedule(jnp.asarray(0.5, jnp.bfloat16), decay_steps=4)
    assert sched(jnp.asarray(1, jnp.int32)).dtype == jnp.float32  # bfloat16 meets float32
    with jax.enable_x64(True):
        sched = fdl.linear_schedule(jnp.asarray(1.0, jnp.float64), 0.0, transition_steps=3)
        assert sched(jnp.asarray(1, jnp.int32)).dtype == jnp.float64


def test_traced_values_are_accepted():
    """Hyperparameters may be traced (a sweep under vmap); only step counts must be concrete."""

    def value_at_3(init, peak):
        return fdl.warmup_cosine_decay_schedule(init, peak, 2, 10)(jnp.asarray(3, jnp.int32))

    inits = jnp.asarray([0.0, 0.1], jnp.float32)
    peaks = jnp.asarray([1.0, 0.0], jnp.float32)
    got = np.asarray(jax.jit(jax.vmap(value_at_3))(inits, peaks))
    expected = [
        np_warmup_cosine(np.array(3.0), 0.0, 1.0, 2, 10),
        np_warmup_cosine(np.array(3.0), 0.1, 0.0, 2, 10),
    ]
    np.testing.assert_allclose(got, np.asarray(expected), rtol=0, atol=FORMULA_RTOL)


def test_drives_an_optimizer_step_by_step():
    """``scale_by_learning_rate(schedule)`` steps by ``-schedule(t) * g`` at t = 0, 1, ..."""
    sched = fdl.piecewise_constant_schedule(0.5, {1: 0.5, 2: 0.1})
    opt = base.scale_by_learning_rate(sched)
    state = opt.init(jnp.zeros(2))
    got = []
    for _ in range(4):
        updates, state = opt.update(jnp.ones(2), state)
        got.append(float(updates[0]))
    np.testing.assert_allclose(got, [-0.5, -0.25, -0.025, -0.025], rtol=1e-6)


# ------------------------------------------------------------------------------ errors


def _message(text):
    return re.escape(text)


ERRORS = [
    (
        lambda: fdl.linear_schedule(1.0, 0.0, 10, transition_begin=-1),
        "`transition_begin` must be >= 0 (the number of steps spent at `init_value`), got -1",
    ),
    (
        lambda: fdl.polynomial_schedule(1.0, 0.0, 2, transition_steps=float("nan")),
        "`transition_steps` must be a concrete, finite real number",
    ),
    (
        lambda: fdl.polynomial_schedule(1.0, 0.0, -1.0, 10),
        "`power` must be > 0 (a negative power is infinite at the end, and 0 ignores `end_value`), got -1.0",
    ),
    (lambda: fdl.polynomial_schedule(1.0, 0.0, 0, 10), "`power` must be > 0"),
    (
        lambda: fdl.exponential_decay(1.0, 10, -0.5),
        "`decay_rate` must be >= 0 (a negative rate has no real fractional powers), got -0.5",
    ),
    (
        lambda: fdl.exponential_decay(1.0, 10, 0.5, transition_begin=-2),
        "`transition_begin` must be >= 0",
    ),
    (
        lambda: fdl.exponential_decay(1.0, 10, float("nan")),
        "`decay_rate` must be a concrete, finite real number",
    ),
    (
        lambda: fdl.cosine_decay_schedule(1.0, decay_steps=float("inf")),
        "`decay_steps` must be a concrete, finite real number (a Python or NumPy number, not a "
        "traced value), got inf",
    ),
    (
        lambda: fdl.cosine_decay_schedule(1.0, decay_steps=-5),
        "`decay_steps` must be > 0 (the length of the cosine), got -5",
    ),
    (lambda: fdl.cosine_decay_schedule(1.0, decay_steps=0), "`decay_steps` must be > 0"),
    (
        lambda: fdl.cosine_decay_schedule(1.0, 10, exponent=-1.0),
        "`exponent` must be > 0 (a negative exponent is infinite from `decay_steps` on, and 0 "
        "ignores `alpha`), got -1.0",
    ),
    (
        lambda: fdl.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=-3, decay_steps=10),
        "`warmup_steps` must be >= 0 (the length of the warmup), got -3",
    ),
    (
        lambda: fdl.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2.5, decay_steps=10),
        "`warmup_steps` must be a whole number of steps (the length of the warmup), got 2.5",
    ),
    (
        lambda: fdl.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=10),
        "`decay_steps` is the total length of the schedule, warmup included, so it must be "
        "greater than `warmup_steps`; got decay_steps=10, warmup_steps=10",
    ),
    (
        lambda: fdl.piecewise_constant_schedule(1.0, {5: -0.1}),
        "`boundaries_and_scales` scales must be >= 0, got scale -0.1 at step 5",
    ),
    (
        lambda: fdl.piecewise_constant_schedule(1.0, {-5: 0.1}),
        "`boundaries_and_scales` must be >= 0 (its keys are the steps of the jumps), got -5",
    ),
    (
        lambda: fdl.piecewise_constant_schedule(1.0, {2.5: 0.1}),
        "`boundaries_and_scales` must be a whole number of steps",
    ),
    (
        lambda: fdl.piecewise_constant_schedule(1.0, [(5, 0.1)]),
        "`boundaries_and_scales` must be a mapping {step: scale} or None, got [(5, 0.1)]",
    ),
    (lambda: fdl.join_schedules([], []), "`schedules` must hold at least one schedule"),
    (
        lambda: fdl.join_schedules([fdl.constant_schedule(1.0)] * 2, [3, 4]),
        "`boundaries` must have one entry fewer than `schedules` (each boundary starts the next "
        "schedule), got 2 schedules and 2 boundaries [3, 4]",
    ),
    (
        lambda: fdl.join_schedules([fdl.constant_schedule(1.0), 0.5], [3]),
        "`schedules[1]` must be a schedule (a callable), got 0.5",
    ),
    (
        lambda: fdl.join_schedules([fdl.constant_schedule(1.0)] * 3, [4, 2]),
        "`boundaries` must be non-decreasing, got [4, 2]",
    ),
    (
        lambda: fdl.join_schedules([fdl.constant_schedule(1.0)] * 2, [-1]),
        "`boundaries` must be >= 0",
    ),
    (
        lambda: fdl.warmup_constant_schedule(0.0, 1.0, warmup_steps=-2),
        "warmup_constant_schedule: `warmup_steps` must be >= 0 (the length of the warmup), got -2",
    ),
    (
        lambda: fdl.warmup_exponential_decay_schedule(0.0, 1.0, 1.5, 3, 0.5),
        "warmup_exponential_decay_schedule: `warmup_steps` must be a whole number of steps (the "
        "length of the warmup), got 1.5",
    ),
    (
        lambda: fdl.warmup_exponential_decay_schedule(0.0, 1.0, 2, 3, 0.5, transition_begin=-1),
        "warmup_exponential_decay_schedule: `transition_begin` must be >= 0",
    ),
    (
        lambda: fdl.piecewise_interpolate_schedule("linar", 1.0),
        "piecewise_interpolate_schedule: `interpolate_type` must be 'linear' or 'cosine', got 'linar'",
    ),
    (
        lambda: fdl.piecewise_interpolate_schedule(None, 1.0, {}),
        "`interpolate_type` must be 'linear' or 'cosine', got None",
    ),
    (
        lambda: fdl.piecewise_interpolate_schedule("cosine", 1.0, {5: -3.0}),
        "piecewise_interpolate_schedule: `boundaries_and_scales` scales must be >= 0, got scale -3.0 at step 5",
    ),
    (
        lambda: fdl.piecewise_interpolate_schedule("cosine", 1.0, {-5: 3.0}),
        "`boundaries_and_scales` must be >= 0 (its keys are steps), got -5",
    ),
    (
        lambda: fdl.piecewise_interpolate_schedule("linear", 1.0, [(5, 2.0)]),
        "`boundaries_and_scales` must be a mapping {step: scale} or None, got [(5, 2.0)]",
    ),
    (
        lambda: fdl.linear_onecycle_schedule(0, 1.0),
        "linear_onecycle_schedule: `transition_steps` must be a positive number of steps, got 0",
    ),
    (
        lambda: fdl.cosine_onecycle_schedule(-4, 1.0),
        "cosine_onecycle_schedule: `transition_steps` must be >= 0 (the length of the cycle), got -4",
    ),
    (
        lambda: fdl.cosine_onecycle_schedule(10, 1.0, pct_start=1.3),
        "`pct_start` must be a fraction of the cycle in [0, 1], got 1.3",
    ),
    (
        lambda: fdl.linear_onecycle_schedule(10, 1.0, pct_start=0.5, pct_final=0.4),
        "`pct_final` must be >= `pct_start`, got pct_final=0.4, pct_start=0.5",
    ),
    (
        lambda: fdl.linear_onecycle_schedule(10, 1.0, div_factor=0.0),
        "linear_onecycle_schedule: `div_factor` must be a finite number > 0 (it divides the peak), got 0.0",
    ),
    (
        lambda: fdl.cosine_onecycle_schedule(10, 1.0, final_div_factor=float("inf")),
        "cosine_onecycle_schedule: `final_div_factor` must be a finite number > 0 (it divides the peak), got inf",
    ),
    (lambda: fdl.sgdr_schedule([]), "sgdr_schedule: `cosine_kwargs` must hold at least one cycle, got none"),
    (
        lambda: fdl.sgdr_schedule([SGDR_CYCLES[0], 5]),
        "`cosine_kwargs[1]` must be a mapping of warmup_cosine_decay_schedule's arguments, got 5",
    ),
    (
        lambda: fdl.sgdr_schedule([SGDR_CYCLES[0], dict(SGDR_CYCLES[1], decay_steps=2)]),
        "sgdr_schedule: `cosine_kwargs[1]`: `decay_steps` is the total length of the schedule, warmup "
        "included, so it must be greater than `warmup_steps`; got decay_steps=2, warmup_steps=2",
    ),
]


@pytest.mark.parametrize("make, message", ERRORS, ids=[f"error{i}" for i in range(len(ERRORS))])
def test_invalid_arguments_raise_naming_the_argument(make, message):
    with pytest.raises(ValueError, match=_message(message)):
        make()


def test_sgdr_cycle_with_a_wrong_argument_names_the_cycle():
    with pytest.raises(
        TypeError, match=r"^sgdr_schedule: `cosine_kwargs\[0\]`: .*unexpected keyword argument 'warmup'"
    ):
        fdl.sgdr_schedule([dict(init_value=0.0, peak_value=1.0, warmup=2, decay_steps=5)])


def test_warmup_constant_without_warmup_is_the_peak_where_optax_stays_at_init():
    """The documented difference: a warmup of 0 steps means no warmup."""
    counts = jnp.arange(4, dtype=jnp.int32)
    np.testing.assert_array_equal(fdl.warmup_constant_schedule(0.1, 1.0, 0)(counts), np.ones(4, np.float32))
    with optax_promotion():
        np.testing.assert_allclose(
            optax.warmup_constant_schedule(0.1, 1.0, 0)(counts), np.full(4, 0.1), rtol=1e-7
        )


def test_onecycle_with_phases_on_one_step_keeps_every_phase():
    """The documented difference: with ``pct_final == pct_start`` the descent to P/d takes no
    steps (a jump) and the peak is still reached; optax's dict keeps only the second scale for
    step 5, so its cycle falls from P/d at once and never rises to P."""
    sched = fdl.linear_onecycle_schedule(
        10, 1.0, pct_start=0.5, pct_final=0.5, div_factor=4.0, final_div_factor=2.0
    )
    values = np.asarray(jax.jit(sched)(jnp.arange(12, dtype=jnp.int32)))
    # up from 1/4 to 1 over 5 steps, a jump back to 1/4 at step 5, down to 1/8 over 5 steps
    expected = np_interpolate(np.arange(12.0), "linear", 0.25, [(5, 4.0), (5, 0.25), (10, 0.5)])
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    assert values[4] == pytest.approx(0.85) and values[5] == pytest.approx(0.25)
    with optax_promotion():
        reference = optax.linear_onecycle_schedule(
            10, 1.0, pct_start=0.5, pct_final=0.5, div_factor=4.0, final_div_factor=2.0
        )
        assert max(float(reference(jnp.int32(t))) for t in range(12)) == pytest.approx(0.25)  # at t = 0


def test_cosine_onecycle_rising_for_the_whole_cycle_keeps_the_rise():
    """``pct_start=1``: the rise takes the whole cycle, then the value drops to P/(d f); optax's
    dict drops the rise, so its cycle falls from P/d."""
    sched = fdl.cosine_onecycle_schedule(4, 1.0, pct_start=1.0, div_factor=10.0, final_div_factor=10.0)
    values = np.asarray(sched(jnp.arange(6, dtype=jnp.int32)))
    expected = np_interpolate(np.arange(6.0), "cosine", 0.1, [(4, 10.0), (4, 0.01)])
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    assert np.all(np.diff(values[:4]) > 0) and values[4] == pytest.approx(0.01)
    with optax_promotion():
        reference = optax.cosine_onecycle_schedule(
            4, 1.0, pct_start=1.0, div_factor=10.0, final_div_factor=10.0
        )
        assert np.all(np.diff([float(reference(jnp.int32(t))) for t in range(5)]) < 0)


def test_interpolation_before_step_0_is_the_initial_value():
    sched = fdl.piecewise_interpolate_schedule("linear", 2.0, {3: 0.5})
    np.testing.assert_array_equal(sched(jnp.array([-2, -1, 0])), np.full(3, 2.0, np.float32))
    with optax_promotion():
        assert float(optax.piecewise_interpolate_schedule("linear", 2.0, {3: 0.5})(-1)) == 0.0


def test_optax_accepts_what_fdl_rejects():
    """The documented differences: optax silently accepts these, fdl raises (tested above)."""
    clamped = optax.linear_schedule(1.0, 0.0, 10, transition_begin=-1)
    assert float(clamped(0)) == pytest.approx(1.0)  # begin silently clamped to 0
    dropped = optax.join_schedules([optax.constant_schedule(1.0)] * 2, [3, 4])
    assert float(dropped(10)) == 1.0  # the extra boundary is dropped by zip
    assert math.isinf(float(optax.polynomial_schedule(1.0, 0.0, -1.0, 10)(10)))


# ------------------------------------------------------------- where optax goes wrong under jit


def test_polynomial_fractional_power_is_exact_at_the_end_under_jit():
    """XLA compiles optax's 1 - tau/T into an FMA with fl(1/T), slightly negative at tau = T, so
    optax 0.2.8's jitted ``polynomial_schedule(0.5, 0.1, 0.5, 9)`` is NaN from step 9 on (the
    documented difference). fdl's (T - tau)/T is never negative, and the plateaus are exact."""
    counts = jnp.arange(50, dtype=jnp.int32)
    lengths = range(1, 41)

    @jax.jit
    def tabulate_all(counts):
        return jnp.stack([fdl.polynomial_schedule(0.5, 0.1, 0.5, T, 3)(counts) for T in lengths])

    values = np.asarray(tabulate_all(counts))  # (len(lengths), 50)
    t = np.arange(50.0)
    for row, T in zip(values, lengths, strict=True):
        assert np.all(row[t <= 3] == np.float32(0.5)), T
        assert np.all(row[t >= 3 + T] == np.float32(0.1)), T
        expected = np_polynomial(t, 0.5, 0.1, 0.5, T, 3)
        np.testing.assert_allclose(row, expected, rtol=0, atol=FORMULA_RTOL * 0.5, err_msg=T)


def test_staircase_steps_on_every_multiple_under_jit():
    """optax's floor((t - B) / T) becomes floor((t - B) * fl(1/T)) under jit, one stair late at
    some multiples of T (T = 41, 47, 55, ... in float32); fdl divides integers."""
    counts = jnp.arange(300, dtype=jnp.int32)
    lengths = range(1, 101)

    @jax.jit
    def tabulate_all(counts):
        return jnp.stack(
            [fdl.exponential_decay(1.0, T, 0.99, transition_begin=2, staircase=True)(counts) for T in lengths]
        )

    values = np.asarray(tabulate_all(counts))  # (len(lengths), 300)
    t = np.arange(300)
    rate = float(np.float32(0.99))  # the rate as fdl holds it, so only pow's rounding remains
    for row, T in zip(values, lengths, strict=True):
        stairs = np.maximum(t - 2, 0) // T
        # A stair off by one is off by 1%; float32 pow rounds within a few ulp (< 1e-6).
        np.testing.assert_allclose(row, rate**stairs, rtol=1e-6, atol=0, err_msg=f"T={T}")
