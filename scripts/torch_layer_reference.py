r"""Record PyTorch layer outputs and gradients as test fixtures for ``fdl.nn``.

PyTorch is never a dependency of fdl: this script is run by hand, in a separate virtual
environment, and its output is committed under ``tests/nn/fixtures/``::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python scripts/torch_layer_reference.py

(on this project's machines the CPU wheel is on disk: ``pip install
/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl numpy``). It writes

* ``torch_layers.npz``: for every case below, in **PyTorch's own layouts** (channels first,
  ``weight`` as torch stores it), the input ``x``, the parameters, the output ``y``, a fixed
  cotangent ``dy`` and the gradients of the loss :math:`L = \sum y \odot dy` with respect to
  the input and every parameter (``grad/x``, ``grad/weight``, ``grad/bias``). Everything is
  float32, drawn once with ``numpy.random.default_rng(SEED)``. Plain arrays only, so
  ``np.load(path, allow_pickle=False)`` reads it.
* ``torch_layers.json``: each case's torch module and keyword arguments (torch's own names), the
  versions of torch, NumPy and Python, the SHA-256 of the ``.npz`` and of this script, which
  ``tests/nn/test_torch_layers.py`` checks (so the fixture is known to come from the committed
  script).

The cases are the capabilities fdl matches PyTorch on: ``LayerNorm`` over several trailing axes,
``RMSNorm`` (its default ``eps=None`` and an explicit ``eps``, on inputs small enough that
:math:`\epsilon` matters), grouped, strided, padded, dilated ``ConvTranspose1d/2d`` with
``output_padding``, grouped ``Conv2d``, and ``AdaptiveMaxPool1d/2d(1)`` (global max pooling).
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch

SEED = 20251202
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "nn" / "fixtures"

# name -> (torch.nn class name, keyword arguments, input shape in torch's layout, input scale).
# The scale multiplies standard normal inputs (small for RMSNorm, so that eps matters).
CASES: dict[str, tuple[str, dict, tuple[int, ...], float]] = {
    "layer_norm_2axes": ("LayerNorm", {"normalized_shape": [5, 6]}, (3, 4, 5, 6), 2.0),
    "layer_norm_3axes": (
        "LayerNorm", {"normalized_shape": [3, 4, 2], "eps": 1e-3}, (2, 3, 4, 2), 1.0,
    ),
    "rms_norm_default_eps": ("RMSNorm", {"normalized_shape": [5, 6]}, (3, 4, 5, 6), 3e-4),
    "rms_norm_eps": ("RMSNorm", {"normalized_shape": [6], "eps": 1e-6}, (3, 4, 6), 1e-3),
    "conv_transpose2d_groups": (
        "ConvTranspose2d",
        {
            "in_channels": 4, "out_channels": 6, "kernel_size": [3, 2], "stride": 2,
            "padding": 1, "output_padding": 1, "groups": 2, "dilation": [1, 2],
        },
        (2, 4, 4, 3),
        1.0,
    ),
    "conv_transpose2d_depthwise": (
        "ConvTranspose2d",
        {
            "in_channels": 3, "out_channels": 3, "kernel_size": 3, "stride": [2, 1],
            "padding": [0, 1], "groups": 3, "bias": False,
        },
        (2, 3, 3, 4),
        1.0,
    ),
    "conv_transpose1d_groups": (
        "ConvTranspose1d",
        {
            "in_channels": 4, "out_channels": 2, "kernel_size": 3, "stride": 3, "padding": 2,
            "output_padding": 2, "groups": 2, "dilation": 2,
        },
        (2, 4, 5),
        1.0,
    ),
    "conv2d_groups": (
        "Conv2d",
        {
            "in_channels": 4, "out_channels": 6, "kernel_size": [3, 2], "stride": 2,
            "padding": 1, "groups": 2, "dilation": [1, 2],
        },
        (2, 4, 7, 6),
        1.0,
    ),
    "adaptive_max_pool2d": ("AdaptiveMaxPool2d", {"output_size": 1}, (2, 3, 5, 4), 1.0),
    "adaptive_max_pool1d": ("AdaptiveMaxPool1d", {"output_size": 1}, (2, 3, 7), 1.0),
}


def run(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Build one case's module with weights drawn from ``rng``, run it, and record it."""
    class_name, kwargs, shape, scale = CASES[name]
    module = getattr(torch.nn, class_name)(**kwargs)  # float32, torch's default dtype
    params = dict(module.named_parameters())
    with torch.no_grad():
        for tensor in params.values():  # weights from NumPy, not torch's generator
            tensor.copy_(torch.from_numpy(rng.standard_normal(tuple(tensor.shape), np.float32)))
            if class_name in ("LayerNorm", "RMSNorm") and tensor is params.get("weight"):
                tensor.add_(1.0)  # scales around 1, as the initializer puts them
    x = torch.from_numpy((scale * rng.standard_normal(shape)).astype(np.float32))
    x.requires_grad_(True)
    y = module(x)
    dy = torch.from_numpy(rng.standard_normal(tuple(y.shape), np.float32))
    (y * dy).sum().backward()
    out = {
        f"{name}/x": x.detach().numpy().copy(),
        f"{name}/y": y.detach().numpy().copy(),
        f"{name}/dy": dy.numpy().copy(),
        f"{name}/grad/x": x.grad.numpy().copy(),
    }
    for key, tensor in params.items():
        out[f"{name}/{key}"] = tensor.detach().numpy().copy()
        out[f"{name}/grad/{key}"] = tensor.grad.numpy().copy()
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    record: dict[str, np.ndarray] = {"meta/torch_version": np.asarray(torch.__version__)}
    for name in CASES:
        record.update(run(name, rng))
    path = OUT / "torch_layers.npz"
    np.savez_compressed(path, **record)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    meta = {
        "generator": "scripts/torch_layer_reference.py",
        "generator_sha256": sha256(Path(__file__).resolve()),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "seed": SEED,
        "loss": "sum(y * dy)",
        "cases": {
            name: {"module": f"torch.nn.{cls}", "kwargs": kwargs, "input_shape": list(shape),
                   "input_scale": scale}
            for name, (cls, kwargs, shape, scale) in CASES.items()
        },
        "sha256": {path.name: sha256(path)},
    }
    (OUT / "torch_layers.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {OUT / 'torch_layers.json'}")


if __name__ == "__main__":
    main()
