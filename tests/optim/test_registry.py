"""fdl.optim's registry: names derived from what fdl.optim and optax export, and its errors."""

import inspect
import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

import fdl
from fdl.optim import get_optimizer, make_optimizer, optimizer_names
from fdl.optim.registry import OPTAX_EXCLUDED, resolve_name, twin_name

FDL_NAMES = optimizer_names("fdl", qualified=False)
OPTAX_NAMES = optimizer_names("optax", qualified=False)


def test_fdl_names_are_the_aliases_fdl_optim_exports():
    assert FDL_NAMES == [
        "sgd",
        "adam",
        "adamw",
        "nadam",
        "nadamw",
        "amsgrad",
        "adamax",
        "rmsprop",
        "adagrad",
        "adadelta",
        "lion",
        "adabelief",
        "yogi",
        "radam",
        "sign_sgd",
        "signum",
        "adamaxw",
        "lars",
        "lamb",
        "rprop",
        "novograd",
        "adan",
        "lbfgs",
        "adafactor",
        "sm3",
        "fromage",
        "adopt",
        "ademamix",
        "simplified_ademamix",
        "muon",
        "schedule_free_adamw",
        "schedule_free_sgd",
        "prodigy",
        "optimistic_gradient_descent",
        "optimistic_adam",
        "optimistic_adam_v2",
    ]
    for name in FDL_NAMES:
        assert name in fdl.optim.__all__ and get_optimizer(name) is getattr(fdl.optim, name)
    # atoms, combinators and schedules are not optimizers, though some take a learning rate
    for name in ("scale_by_learning_rate", "chain", "scale", "constant_schedule", "torch"):
        assert name in fdl.optim.__all__ and name not in FDL_NAMES


def test_a_new_alias_exported_from_fdl_optim_is_a_name_at_once(monkeypatch):
    def signsgd(learning_rate):
        return fdl.optim.sgd(learning_rate)

    monkeypatch.setattr(fdl.optim, "signsgd", signsgd, raising=False)
    monkeypatch.setattr(fdl.optim, "__all__", [*fdl.optim.__all__, "signsgd"])
    assert "fdl:signsgd" in optimizer_names("fdl")
    assert get_optimizer("signsgd") is signsgd


def test_optax_names_start_with_fdls_and_leave_out_what_compare_cannot_run():
    assert OPTAX_NAMES[: len(FDL_NAMES)] == FDL_NAMES  # every fdl alias has its optax twin
    rest = OPTAX_NAMES[len(FDL_NAMES) :]
    assert rest == sorted(rest) and set(rest) == set(OPTAX_NAMES) - set(FDL_NAMES)
    assert not set(OPTAX_EXCLUDED) & set(OPTAX_NAMES)
    assert "dpsgd" not in OPTAX_NAMES  # deprecated in optax: skipped without a warning


def test_reading_optax_names_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer_names()


@pytest.mark.parametrize("name", OPTAX_NAMES)
def test_every_optax_name_builds_and_takes_a_step(name):
    """Through the one train step, which passes value, grad and value_fn to those that take
    them (the line searches of lbfgs)."""
    opt = make_optimizer(f"optax:{name}", {"learning_rate": 1e-2})
    loss = fdl.train.simple_loss(lambda p, batch, key: 0.5 * jnp.sum(p["w"] ** 2))
    # A full-rank start: on a rank-1 gradient (all ones) galore's projection keeps a direction
    # of rounding noise, which Adam scales up to the learning rate, a sign that varies by CPU.
    params = {"w": jnp.array([[1.0, 0.5], [0.25, 2.0], [1.5, 0.75]])}
    with jax.numpy_dtype_promotion("standard"):  # optax needs it (design.md §11)
        state = fdl.train.init_state(params, opt)
        new, metrics, _ = fdl.train.make_step(loss, opt)(state, None, None)
    assert float(metrics["loss"]) == 4.0625
    w = new.params["w"]
    # A descent step: the loss does not rise (rprop's first step is 0, as optax's). Not each
    # entry: galore's Adam acts in a rotated basis, where descent holds only for the whole.
    assert w.shape == (3, 2) and bool(jnp.all(jnp.isfinite(w)))
    assert float(0.5 * jnp.sum(w**2)) <= 4.0625


@pytest.mark.parametrize("name", FDL_NAMES)
def test_every_fdl_state_can_be_donated_with_the_params(name):
    """No array appears twice among the params and the initial state (a jit that donates both
    would fail: 'Attempt to donate the same buffer twice'). optax's prodigy keeps the params
    themselves as its ``params0``; fdl's keeps a copy."""
    opt = make_optimizer(name, {"learning_rate": 1e-2})
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros((2,))}
    leaves = jax.tree.leaves((params, opt.init(params)))
    pointers = [leaf.unsafe_buffer_pointer() for leaf in leaves if isinstance(leaf, jax.Array)]
    assert len(pointers) == len(set(pointers))

    def step(params, state):
        updates, state = opt.update(params, state, params)
        return fdl.optim.apply_updates(params, updates), state

    if not fdl.optim.base.takes_extra_args(opt):  # the line searches need a value_fn
        jax.jit(step, donate_argnums=(0, 1))(params, opt.init(params))


@pytest.fixture
def untwinned(monkeypatch):
    """``novograd`` and ``sm3`` taken out of ``fdl.optim.__all__``: names only optax has, as
    the registry sees them (it reads the exports at each call)."""
    hidden = {"novograd", "sm3"}
    monkeypatch.setattr(fdl.optim, "__all__", [n for n in fdl.optim.__all__ if n not in hidden])
    return hidden


def test_resolve_and_twin_names(untwinned):
    assert get_optimizer("adam") is fdl.optim.adam
    assert get_optimizer("fdl:adam") is fdl.optim.adam
    assert get_optimizer("optax:adam") is optax.adam
    assert resolve_name("optax:novograd") == ("optax", "novograd")
    assert (twin_name("adam"), twin_name("optax:adam"), twin_name("optax:novograd")) == (
        "optax:adam",
        "fdl:adam",
        None,
    )
    assert set(optimizer_names()) == set(optimizer_names("fdl")) | set(optimizer_names("optax"))


@pytest.mark.parametrize("name", FDL_NAMES)
def test_every_fdl_alias_has_optax_arguments(name):
    fdl_factory, optax_factory = get_optimizer(f"fdl:{name}"), get_optimizer(f"optax:{name}")
    assert list(inspect.signature(fdl_factory).parameters) == list(
        inspect.signature(optax_factory).parameters
    )


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        (
            "adamm",
            r"unknown optimizer 'adamm' \(did you mean 'adam'\?\); valid names: NAME or "
            r"fdl:NAME for NAME in \{sgd, adam, .*\}, optax:NAME for NAME in \{sgd, .*novograd.*\}",
        ),
        ("torch:adam", r"unknown optimizer 'torch:adam'.*valid names"),
        ("optax:", r"unknown optimizer 'optax:'.*valid names"),
        (
            "fdl:novograd",
            r"unknown optimizer 'fdl:novograd' \(fdl.optim has no novograd: use optax:novograd\); "
            r"valid names",
        ),
        ("sm3", r"unknown optimizer 'sm3' \(fdl.optim has no sm3: use optax:sm3\)"),
        (7, r"unknown optimizer 7.*valid names"),
    ],
)
def test_unknown_optimizer_names_list_the_valid_ones(name, pattern, untwinned):
    with pytest.raises(ValueError, match=pattern):
        get_optimizer(name)


def test_optimizer_names_rejects_an_unknown_library():
    with pytest.raises(
        ValueError,
        match=r"`library` must be one of \('fdl', 'optax'\) or None, "
        r"got 'torch'",
    ):
        optimizer_names("torch")


def test_make_optimizer_rejects_unknown_and_missing_arguments_listing_valid_ones():
    valid = r"valid arguments: learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov"
    with pytest.raises(TypeError, match=r"fdl:adam has no argument 'lr'; " + valid):
        make_optimizer("adam", {"lr": 0.1})
    with pytest.raises(TypeError, match=r"optax:adam has no argument 'lr', 'beta1'; " + valid):
        make_optimizer("optax:adam", {"lr": 0.1, "beta1": 0.9})
    with pytest.raises(
        TypeError,
        match=r"fdl:adam: missing a required argument: "
        r"'learning_rate'; " + valid,
    ):
        make_optimizer("adam")
    with pytest.raises(TypeError, match=r"fdl:adam: hyperparameter names must be strings, got 1"):
        make_optimizer("adam", {1: 0.1})


def test_make_optimizer_passes_on_the_factorys_validation():
    with pytest.raises(
        ValueError,
        match=r"fdl:adam: `learning_rate` must be a non-negative "
        r"number.*got -1",
    ):
        make_optimizer("adam", {"learning_rate": -1})


def test_make_optimizer_wraps_type_errors_raised_inside_the_factory(monkeypatch):
    def picky(learning_rate):
        raise TypeError("learning_rate must not be a string")

    monkeypatch.setattr(optax, "sgd", picky)
    with pytest.raises(
        TypeError,
        match=r"optax:sgd: learning_rate must not be a string "
        r"\(valid arguments: learning_rate\)",
    ):
        make_optimizer("optax:sgd", {"learning_rate": "fast"})
