r"""fdl layers against outputs and gradients recorded from PyTorch 2.13 layers.

``scripts/torch_layer_reference.py`` built each torch module with weights drawn by NumPy, ran it
on a fixed input and recorded, in torch's layouts, the input, the parameters, the output and the
gradients of :math:`L = \sum y \odot dy` for a fixed cotangent ``dy`` (``fixtures/``). Here the
fdl layer gets the same parameters, converted to fdl's layouts (channels last; a convolution's
``weight`` permuted to ``(*window, in, out)``), and must give the same output and the same
gradients with respect to the input and every parameter. torch is not needed to run these tests.

Tolerance: float32 on both sides, :data:`RTOL` = 1e-5 of each array's largest magnitude. Each
value is a sum of at most a few dozen products (or one normalization over at most 30 entries),
so the two libraries' different summation orders leave a few float32 ulps (6e-8 each) relative
to that magnitude; measured on CPU: at most 2.2e-7 (a depthwise transposed convolution's weight
gradient), so 1e-5 leaves room for other summation orders and still catches any wrong term.
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

from fdl.nn.conv import Conv2D
from fdl.nn.conv_transpose import ConvTranspose1D, ConvTranspose2D
from fdl.nn.normalization import LayerNorm, RMSNorm
from fdl.nn.pooling import GlobalMaxPool

FIXTURES = Path(__file__).parent / "fixtures"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "torch_layer_reference.py"
META = json.loads((FIXTURES / "torch_layers.json").read_text())
RTOL = 1e-5


def load() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "torch_layers.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


ARRAYS = load()


# ------------------------------------------------------------------- the torch -> fdl mapping


def channels_last(a: np.ndarray) -> np.ndarray:
    """``(N, C, *spatial)`` -> ``(N, *spatial, C)``."""
    return np.moveaxis(a, 1, -1)


def channels_first(a: np.ndarray) -> np.ndarray:
    """``(N, *spatial, C)`` -> ``(N, C, *spatial)``."""
    return np.moveaxis(a, -1, 1)


def conv_weight(w: np.ndarray) -> np.ndarray:
    """torch's ``(out, in / G, *window)`` (``ConvTranspose``: ``(in, out / G, *window)``) ->
    fdl's ``(*window, in / G, out)`` (``(*window, out / G, in)``): axes reversed."""
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


# name -> (fdl layer, {torch param: fdl param}, layout: "same" or "channels")
CASES = {
    "layer_norm_2axes": (LayerNorm(ndim=2), {"weight": "scale", "bias": "bias"}, "same"),
    "layer_norm_3axes": (
        LayerNorm(ndim=3, epsilon=1e-3),
        {"weight": "scale", "bias": "bias"},
        "same",
    ),
    "rms_norm_default_eps": (RMSNorm(ndim=2, epsilon=None), {"weight": "scale"}, "same"),
    "rms_norm_eps": (RMSNorm(), {"weight": "scale"}, "same"),  # fdl's default eps is 1e-6
    "conv_transpose2d_groups": (
        ConvTranspose2D(6, (3, 2), strides=2, padding=1, output_padding=1, groups=2, dilation=(1, 2)),
        {"weight": "w", "bias": "b"},
        "channels",
    ),
    "conv_transpose2d_depthwise": (
        ConvTranspose2D(3, 3, strides=(2, 1), padding=((0, 0), (1, 1)), groups=3, use_bias=False),
        {"weight": "w"},
        "channels",
    ),
    "conv_transpose1d_groups": (
        ConvTranspose1D(2, 3, strides=3, padding=2, output_padding=2, groups=2, dilation=2),
        {"weight": "w", "bias": "b"},
        "channels",
    ),
    "conv2d_groups": (
        Conv2D(6, (3, 2), strides=2, padding=1, groups=2, dilation=(1, 2)),
        {"weight": "w", "bias": "b"},
        "channels",
    ),
    "adaptive_max_pool2d": (GlobalMaxPool(2), {}, "channels"),
    "adaptive_max_pool1d": (GlobalMaxPool(1), {}, "channels"),
}


def to_fdl(name: str, torch_name: str, value: np.ndarray) -> np.ndarray:
    """A torch parameter (or its gradient) in fdl's layout."""
    return conv_weight(value) if CASES[name][2] == "channels" and torch_name == "weight" else value


def test_cases_are_the_recorded_ones():
    assert set(CASES) == set(META["cases"])
    for name, (_, names, _) in CASES.items():
        recorded = {k.split("/")[-1] for k in ARRAYS if k.startswith(f"{name}/grad/")} - {"x"}
        assert recorded == set(names), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_output_and_gradients(name, key):
    layer, names, layout = CASES[name]
    get = lambda key: ARRAYS[f"{name}/{key}"]
    x, y_torch, dy = get("x"), get("y"), get("dy")
    params = {fdl: jnp.asarray(to_fdl(name, t, get(t))) for t, fdl in names.items()}
    if layout == "channels":
        x = channels_last(x)
    example = x.shape[1:]
    init_params, state, out_shape = layer.init(key, example)
    assert jax.tree.map(jnp.shape, init_params) == jax.tree.map(jnp.shape, params)

    def f(p, v):
        return layer.apply(p, state, v)[0]

    y, vjp = jax.vjp(f, params, jnp.asarray(x))
    assert y.shape == (x.shape[0], *out_shape)
    if layout == "channels":  # back to torch's layout; global pooling keeps (N, C, 1, ...)
        y_fdl = channels_first(np.asarray(y)) if y.ndim > 2 else np.asarray(y)
        y_fdl = y_fdl.reshape(y_torch.shape)
        dy_fdl = dy.reshape(y_torch.shape[:2]) if y.ndim == 2 else channels_last(dy)
    else:
        y_fdl, dy_fdl = np.asarray(y), dy
    assert_close(y_fdl, y_torch, f"{name} y")
    grad_params, grad_x = vjp(jnp.asarray(dy_fdl))
    if layout == "channels":
        grad_x = channels_first(np.asarray(grad_x))
    assert_close(grad_x, get("grad/x"), f"{name} grad x")
    for t, fdl in names.items():
        assert_close(grad_params[fdl], to_fdl(name, t, get(f"grad/{t}")), f"{name} grad {t}")


def assert_close(actual, expected, where):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (where, actual.shape, expected.shape)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=where)


def test_rms_norm_default_eps_matters_in_the_recording():
    # The recorded inputs are small (mean square ~1e-7 and ~1e-6), so the comparison above would
    # fail with the wrong epsilon: with fdl's default 1e-6 instead of torch's finfo eps, and
    # with eps=0 instead of 1e-6.
    wrong_eps = {"rms_norm_default_eps": RMSNorm(ndim=2), "rms_norm_eps": RMSNorm(epsilon=0.0)}
    for name, wrong in wrong_eps.items():
        x, weight = ARRAYS[f"{name}/x"], ARRAYS[f"{name}/weight"]
        y, _ = wrong.apply({"scale": jnp.asarray(weight)}, {}, jnp.asarray(x))
        y_torch = ARRAYS[f"{name}/y"]
        assert np.abs(np.asarray(y) - y_torch).max() > 100 * RTOL * np.abs(y_torch).max(), name


def test_fixture_comes_from_the_committed_script():
    assert META["generator"] == "scripts/torch_layer_reference.py"
    # Editing the script without rerunning it (and committing its output) fails here.
    assert hashlib.sha256(SCRIPT.read_bytes()).hexdigest() == META["generator_sha256"]
    path = FIXTURES / "torch_layers.npz"
    blob = path.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == META["sha256"][path.name]
    assert len(blob) < 200_000
    assert re.fullmatch(r"2\.13\.\d+(\+\w+)?", META["torch_version"]), META["torch_version"]
    assert str(ARRAYS["meta/torch_version"]) == META["torch_version"]
    assert all(a.dtype == np.float32 for k, a in ARRAYS.items() if not k.startswith("meta/"))
    assert {k.split("/")[0] for k in ARRAYS} - {"meta"} == set(META["cases"])
