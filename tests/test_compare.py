"""fdl.compare: trajectories checked by hand, the twin divergence, exports, errors.

The registry of names is tested with fdl.optim (tests/optim/test_registry.py); references,
minibatches, the printed summary and the divergence plot in tests/compare/.
"""

import csv
import io
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fdl
from fdl.compare import Comparison, Run, compare, optimizer_names, simulate
from fdl.compare.runner import plan
from fdl.optim.adam import adam as fdl_adam
from fdl.optim.base import chain, scale
from fdl.problems import get_problem

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------- trajectories


def test_quadratic_with_gradient_descent_matches_the_hand_computation():
    # f = (x^2 + 100 y^2)/2 from (-4, 1), gradient descent with lr 0.01:
    #   y_1 = 1 - 0.01 * 100 * 1 = 0, then stays 0;  x_t = -4 * 0.99^t.
    #   f_0 = (16 + 100)/2 = 58,  f_t = 8 * 0.99^(2t) for t >= 1.
    # First t with f_t <= 1:  0.99^(2t) <= 1/8  <=>  t >= ln 8 / (-2 ln 0.99) = 103.45, so 104
    # (f_103 = 1.009, f_104 = 0.989: a 1% margin, far above float32 rounding).
    result = compare({"gd": ("sgd", {"learning_rate": 0.01})}, "quadratic", steps=110, threshold=1.0)
    run = result.runs["gd"]
    t = np.arange(1, 111)
    # float32: x loses at most ~2 ulp per step, so after 110 steps f is within 110 * 4 * 6e-8.
    np.testing.assert_allclose(run.losses[1:], 8 * 0.99 ** (2 * t), rtol=3e-5)
    assert run.losses[0] == 58.0
    np.testing.assert_allclose(run.path[:, 0], -4 * 0.99 ** np.arange(111), rtol=2e-5)
    np.testing.assert_allclose(run.path[1:, 1], 0.0, atol=1e-7)
    row = result.summary()[0]
    assert row.steps_to_threshold == 104
    assert row.best_step == 110
    assert row.final_loss == row.best_loss == pytest.approx(8 * 0.99**220, rel=3e-5)
    assert row.nonfinite_step is None


def test_threshold_edge_cases():
    specs = {"gd": ("sgd", {"learning_rate": 0.01})}
    above_start = compare(specs, "quadratic", steps=3, threshold=100.0).summary()[0]
    assert above_start.steps_to_threshold == 0  # the starting loss 58 already counts
    never = compare(specs, "quadratic", steps=3, threshold=1e-9).summary()[0]
    assert never.steps_to_threshold is None
    assert compare(specs, "quadratic", steps=3).summary()[0].steps_to_threshold is None


def test_every_optimizer_starts_from_the_same_point_and_stays_finite():
    specs = {
        "sgd": ("sgd", {"learning_rate": 1e-3}),
        "momentum": ("optax:sgd", {"learning_rate": 1e-3, "momentum": 0.9}),
        "adam": ("adam", {"learning_rate": 1e-2}),
        "rmsprop": ("rmsprop", {"learning_rate": 1e-2}),
        "given": optax.adagrad(0.1),
    }
    result = compare(specs, "rosenbrock", steps=50)
    start = np.float32(get_problem("rosenbrock").start)
    assert list(result.runs) == list(specs)
    for run in result.runs.values():
        assert run.losses.shape == (51,) and run.path.shape == (51, 2)
        np.testing.assert_array_equal(run.path[0], start)
        assert run.losses[0] == result.runs["sgd"].losses[0]
        assert np.all(np.isfinite(run.losses)) and run.losses[-1] < run.losses[0]
    assert result.runs["given"].spec == "GradientTransformationExtraArgs (given)"
    assert result.runs["given"].divergence is None and result.runs["given"].twin is None


def test_data_problem_runs_without_paths(key):
    result = compare({"gd": ("sgd", {"learning_rate": 0.5})}, "logistic_digits", steps=5, seed=3)
    run = result.runs["gd"]
    assert run.path is None and run.losses.shape == (6,)
    assert run.losses[0] == pytest.approx(math.log(10.0), rel=1e-6)  # zero init, see problems
    assert np.all(np.diff(run.losses) < 0)
    assert run.divergence.shape == (6,) and run.divergence.max() < 1e-6  # fdl:sgd vs optax:sgd


# ------------------------------------------------------------------------------- the twin check


def test_fdl_adam_stays_with_optax_adam_and_the_measure_matches_numpy():
    result = compare(
        {"fdl": ("adam", {"learning_rate": 1e-2}), "optax": ("optax:adam", {"learning_rate": 1e-2})},
        "rosenbrock",
        steps=300,
    )
    fdl_run, optax_run = result.runs["fdl"], result.runs["optax"]
    assert fdl_run.twin == "optax:adam(learning_rate=0.01)"
    assert optax_run.twin == "fdl:adam(learning_rate=0.01)"
    # fdl's Adam follows optax's order of operations: float32 rounding at most.
    assert fdl_run.divergence.max() < 1e-5
    # The in-graph measure is the per-step max |difference| of the recorded paths.
    np.testing.assert_array_equal(fdl_run.divergence, np.abs(fdl_run.path - optax_run.path).max(axis=1))
    np.testing.assert_array_equal(fdl_run.divergence, optax_run.divergence)


def test_divergence_of_two_different_optimizers_is_large(key):
    # The same measure must fail when the optimizers differ: Adam against plain SGD.
    problem = get_problem("rosenbrock")
    params = problem.init_params(key)
    out = simulate([fdl_adam(1e-2), optax.sgd(1e-3)], problem.loss, params, 200, record_path=True)
    assert out.losses.shape == (2, 201) and out.paths.shape == (2, 201, 2)
    assert out.divergence[0] == 0.0  # same start
    assert out.divergence.max() > 0.1
    np.testing.assert_array_equal(out.divergence, np.abs(out.paths[0] - out.paths[1]).max(axis=1))


def test_a_named_twin_is_run_once_even_when_both_are_requested():
    specs = {
        "a": ("sgd", {"learning_rate": 1e-3}),
        "b": ("optax:sgd", {"learning_rate": 1e-3}),
        "c": ("sgd", {"learning_rate": 1e-3}),
    }
    groups, notes = plan(specs, twins=True)
    assert len(groups) == 1 and notes == []
    assert [lane.labels for lane in groups[0]] == [["a", "c"], ["b"]]
    fdl_lane, optax_lane = groups[0]  # really one of each library
    assert type(fdl_lane.transform).__module__.startswith("fdl.")
    assert type(optax_lane.transform).__module__.startswith("optax.")


def test_a_twin_that_disagrees_is_caught(monkeypatch):
    # Pretend fdl's sgd had a bug (a learning rate 1% too large): the twin check must see it.
    from fdl.optim.momentum import sgd

    def buggy_sgd(learning_rate, momentum=None, nesterov=False, accumulator_dtype=None):
        return sgd(learning_rate * 1.01, momentum, nesterov, accumulator_dtype)

    monkeypatch.setattr(fdl.optim, "sgd", buggy_sgd)  # the registry reads what fdl.optim exports
    result = compare({"gd": ("sgd", {"learning_rate": 0.01})}, "quadratic", steps=50)
    # x_t = -4 (1 - lr)^t: at t = 50 the two differ by 4 * 50 * 1e-4 * 0.99^49 ~ 0.012.
    assert result.runs["gd"].divergence.max() > 5e-3


def test_twins_can_be_turned_off_and_failures_are_noted():
    off = compare({"adam": ("adam", {"learning_rate": 1e-2})}, "beale", steps=5, twins=False)
    assert off.runs["adam"].divergence is None
    # optax accepts a negative learning rate; fdl's twin refuses it, so there is no check.
    noted = compare({"up": ("optax:sgd", {"learning_rate": -1e-3})}, "beale", steps=5)
    assert noted.runs["up"].divergence is None
    assert len(noted.notes) == 1
    assert "no twin check for 'up': fdl:sgd could not be built" in noted.notes[0]
    assert "Note: no twin check for 'up'" in noted.table()


def test_optax_only_names_have_no_twin(monkeypatch):
    monkeypatch.setattr(fdl.optim, "__all__", [n for n in fdl.optim.__all__ if n != "novograd"])
    result = compare({"novograd": ("optax:novograd", {"learning_rate": 1e-2})}, "beale", steps=5)
    assert result.runs["novograd"].divergence is None and result.notes == ()


# ------------------------------------------------------------------------------------ exports


@pytest.fixture(scope="module")
def small():
    return compare(
        {"adam | fast": ("adam", {"learning_rate": 5e-2}), "gd": ("optax:sgd", {"learning_rate": 1e-3})},
        "himmelblau",
        steps=20,
        threshold=50.0,
    )


def test_table_lists_every_optimizer(small):
    table = small.table()
    lines = table.splitlines()
    assert lines[0].startswith("| optimizer | spec | final loss | best loss (step) | steps to loss <= 50 |")
    assert "adam \\| fast" in table  # a pipe in a label is escaped
    assert len([line for line in lines if line.startswith("| ")]) == 3
    assert "Problem `himmelblau`" in table


def test_saddle_table_says_there_is_no_minimum():
    result = compare({"gd": ("sgd", {"learning_rate": 0.1})}, "saddle", steps=40)
    assert result.runs["gd"].losses[-1] < -1.0  # escaped: the loss is below anything in a minimum
    assert "has no minimum and its loss decreases without bound" in result.table()


def test_json_round_trip(small):
    text = small.to_json()
    back = Comparison.from_json(text)
    assert back.summary() == small.summary()
    assert (back.steps, back.seed, back.threshold, back.notes) == (20, 0, 50.0, small.notes)
    for label, run in small.runs.items():
        other = back.runs[label]
        for field in ("losses", "path", "divergence"):
            np.testing.assert_array_equal(getattr(other, field), getattr(run, field))
        assert (other.spec, other.twin) == (run.spec, run.twin)
    assert back.problem is get_problem("himmelblau")


def test_json_is_strict_and_keeps_non_finite_values():
    losses = np.asarray([1.0, -np.inf, np.nan], np.float32)
    result = Comparison(
        get_problem("saddle"),
        2,
        0,
        None,
        {"x": Run("x", "custom", losses, path=np.zeros((3, 2), np.float32))},
    )
    text = result.to_json()

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    json.loads(text, parse_constant=refuse)
    back = Comparison.from_json(text)
    np.testing.assert_array_equal(back.runs["x"].losses, losses)
    row = back.summary()[0]
    assert row.nonfinite_step == 1 and row.best_step == 1 and row.best_loss == -math.inf
    assert math.isnan(row.final_loss)


def test_from_json_rejects_other_documents():
    with pytest.raises(ValueError, match=r"not an fdl\.compare result"):
        Comparison.from_json('{"format": "something else"}')


def test_csv_round_trip(small):
    rows = list(csv.DictReader(io.StringIO(small.summary_csv())))
    for row, expected in zip(rows, small.summary(), strict=True):
        assert row["optimizer"] == expected.optimizer and row["spec"] == expected.spec
        assert float(row["final_loss"]) == expected.final_loss
        assert float(row["best_loss"]) == expected.best_loss
        assert int(row["best_step"]) == expected.best_step
        assert (row["steps_to_threshold"] or None) == (
            None if expected.steps_to_threshold is None else str(expected.steps_to_threshold)
        )
        assert float(row["max_divergence"]) == expected.max_divergence
    curves = list(csv.DictReader(io.StringIO(small.curves_csv())))
    assert len(curves) == 2 * 21
    for line in curves:
        run = small.runs[line["optimizer"]]
        t = int(line["step"])
        assert np.float32(float(line["loss"])) == run.losses[t]
        assert np.float32(float(line["x"])) == run.path[t, 0]
        assert np.float32(float(line["divergence"])) == run.divergence[t]


def test_save_writes_every_file_as_a_valid_png_or_text(small, tmp_path):
    written = small.save(tmp_path / "out")
    names = sorted(path.name for path in written)
    assert names == sorted(
        ["table.md", "table.csv", "table.json", "curves.csv", "losses.png", "contour.png", "divergence.png"]
    )
    for path in written:
        assert path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_SIGNATURE
            assert path.stat().st_size > 10_000  # axes, curves and text, not an empty canvas
    assert (tmp_path / "out" / "table.md").read_text() == small.table()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


def test_data_problem_has_no_contour(tmp_path):
    result = compare({"gd": ("optax:sgd", {"learning_rate": 0.1})}, "mlp_digits", steps=3, twins=False)
    names = {path.name for path in result.save(tmp_path)}
    assert "contour.png" not in names and "divergence.png" not in names
    with pytest.raises(ValueError, match="plot_contour needs a 2-D problem; `mlp_digits`"):
        result.plot_contour(tmp_path / "c.png")
    with pytest.raises(ValueError, match="no optimizer here has a twin"):
        result.plot_divergence(tmp_path / "d.png")


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("steps", [0, -1, 1.5, True, "10"])
def test_steps_must_be_a_positive_int(steps):
    with pytest.raises(ValueError, match=r"`steps` must be a positive integer, got"):
        compare({"gd": ("sgd", {"learning_rate": 0.1})}, "beale", steps)


def test_compare_error_messages():
    ok = {"gd": ("sgd", {"learning_rate": 0.1})}
    with pytest.raises(ValueError, match=r"unknown problem 'nope'; valid problems: rosenbrock"):
        compare(ok, "nope")
    with pytest.raises(
        TypeError,
        match=r"`problem` must be a name \(rosenbrock, .*\) or a "
        r"fdl.problems.Problem",
    ):
        compare(ok, 42)
    with pytest.raises(ValueError, match=r"unknown optimizer 'sgdd'.*valid names"):
        compare({"x": "sgdd"}, "beale")
    with pytest.raises(
        TypeError,
        match=r"fdl:sgd has no argument 'lr'; valid arguments: "
        r"learning_rate, momentum, nesterov, accumulator_dtype",
    ):
        compare({"x": ("sgd", {"lr": 0.1})}, "beale")
    with pytest.raises(
        ValueError,
        match=r"fdl:adam: `learning_rate` must be a non-negative "
        r"number.*got -1",
    ):
        compare({"x": ("adam", {"learning_rate": -1})}, "beale")
    with pytest.raises(TypeError, match=r"optimizer 'x': the spec must be a registry name"):
        compare({"x": ("sgd", 0.1)}, "beale")
    with pytest.raises(TypeError, match=r"optimizer labels must be non-empty strings, got 3"):
        compare({3: "sgd"}, "beale")
    with pytest.raises(ValueError, match=r"`optimizers` must be a non-empty mapping"):
        compare({}, "beale")
    with pytest.raises(ValueError, match=r"`threshold` must be a finite number or None, got nan"):
        compare(ok, "beale", threshold=float("nan"))
    with pytest.raises(ValueError, match=r"`seed` must be an integer, got 1.5"):
        compare(ok, "beale", seed=1.5)


def test_simulate_error_messages():
    loss = get_problem("beale").loss
    with pytest.raises(ValueError, match="simulate needs at least one transformation"):
        simulate([], loss, {"xy": jnp.zeros(2)}, 3)
    with pytest.raises(TypeError, match=r"transforms\[1\] must be a gradient transformation"):
        simulate([optax.sgd(0.1), "sgd"], loss, {"xy": jnp.zeros(2)}, 3)
    with pytest.raises(ValueError, match="`steps` must be a positive integer, got 0"):
        simulate([optax.sgd(0.1)], loss, {"xy": jnp.zeros(2)}, 0)


def test_fdl_transformations_run_under_the_callers_strict_promotion():
    # conftest sets strict promotion; a given fdl chain runs without the standard-promotion
    # scope that optax needs, and still works.
    assert jax.config.jax_numpy_dtype_promotion == "strict"
    result = compare({"mine": chain(scale(-0.01))}, "quadratic", steps=2)
    assert result.runs["mine"].spec == "GradientTransformation (given)"
    expected = [8 * 0.99**2, 8 * 0.99**4]  # as in the hand computation above
    np.testing.assert_allclose(result.runs["mine"].losses[1:], expected, rtol=1e-6)


@pytest.mark.slow  # every alias compiled twice
def test_every_fdl_alias_runs_as_a_twin_of_optax():
    # One compare call runs each fdl alias next to optax's; fdl follows optax's order of
    # operations, so 100 steps on Beale (parameters of size ~1) stay within float32 rounding.
    names = optimizer_names("fdl", qualified=False)
    # Prodigy estimates its step size; its learning rate is a factor on that, 1.0 by design.
    rates = {name: 1.0 if name == "prodigy" else 1e-3 for name in names}
    specs = {name: (name, {"learning_rate": rates[name]}) for name in names}
    result = compare(specs, "beale", steps=100)
    assert result.notes == ()
    for name, row in zip(specs, result.summary(), strict=True):
        assert row.twin == f"optax:{name}(learning_rate={rates[name]})"
        assert row.max_divergence < 1e-5, name
        assert row.final_loss < result.runs[name].losses[0], name
