r"""Record PyTorch's attention and transformer layers as test fixtures for ``fdl.nn``.

PyTorch is never a dependency of fdl: this script is run by hand, in a separate virtual
environment, and its output is committed as ``tests/nn/fixtures/torch_attention.npz``::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python scripts/torch_attention_reference.py

It builds, in float64 with every parameter drawn at random (non-zero biases, layer-norm scales
away from 1), and runs on fixed random inputs:

* ``mha_self``: ``nn.MultiheadAttention(8, 2, batch_first=True)`` as self-attention, with no
  mask, with a ``key_padding_mask``, and with a causal ``attn_mask`` and a ``key_padding_mask``;
* ``mha_cross``: ``nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)`` from 4 queries
  of width 8 to 6 keys/values of width 6, with no mask, a ``key_padding_mask``, and a
  ``(T_q, T_k)`` ``attn_mask`` with a ``key_padding_mask``;
* ``encoder``: ``nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu",
  batch_first=True, norm_first=True)``, plain and with a causal ``src_mask`` and a
  ``src_key_padding_mask``;
* ``decoder``: ``nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, activation="gelu",
  batch_first=True, norm_first=True)`` with a memory of 6 steps: without ``tgt_mask``, with a
  causal ``tgt_mask``, and with a causal ``tgt_mask`` and both key padding masks.

Modules run in training mode (dropout 0, so the same function) to keep PyTorch off its fused
inference fast path. Masks are stored in fdl's convention, True = a real position / may attend;
torch's boolean masks are their negation (True = ignore). No mask leaves a query with no key.

The ``.npz`` holds plain arrays only (``np.load(path, allow_pickle=False)``): for each case
``<case>/param/<torch parameter name>`` (torch's layout, ``(out, in)``), the inputs, the masks
and ``<case>/y_<variant>``; plus ``torch_version``, ``numpy_version``, ``generator`` and
``script_sha256``, the SHA-256 of this script, which ``tests/nn/test_attention.py`` checks: editing
the script without regenerating the fixture fails there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

SEED = 20240917
OUT = Path(__file__).resolve().parent.parent / "tests" / "nn" / "fixtures" / "torch_attention.npz"
BATCH, HEADS, WIDTH, MLP = 3, 2, 8, 16


def randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Draw every parameter: weights N(0, 1/fan_in), biases N(0, 0.3^2), norm scales
    1 + N(0, 0.3^2)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            draw = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            if p.ndim == 2:
                p.copy_(draw / np.sqrt(p.shape[1]))
            elif name.startswith("norm") and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * draw)
            else:
                p.copy_(0.3 * draw)


def lengths_mask(lengths: list[int], length: int) -> np.ndarray:
    """fdl's padding mask: True at the first ``lengths[b]`` positions of row ``b``."""
    return np.arange(length)[None, :] < np.asarray(lengths)[:, None]


def causal_disallowed(length: int) -> torch.Tensor:
    """torch's boolean causal ``attn_mask``: True (= not allowed) above the diagonal."""
    return torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)


def params_of(case: str, module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {f"{case}/param/{k}": v.detach().numpy().copy() for k, v in module.named_parameters()}


def main() -> None:
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    out: dict[str, np.ndarray] = {
        "torch_version": np.array(torch.__version__),
        "numpy_version": np.array(np.__version__),
        "generator": np.array("scripts/torch_attention_reference.py"),
        "script_sha256": np.array(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()),
    }

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a))

    # ---- self-attention
    t = 5
    mha = torch.nn.MultiheadAttention(WIDTH, HEADS, batch_first=True).double().train()
    randomize(mha, gen)
    x = rng.standard_normal((BATCH, t, WIDTH))
    mask = lengths_mask([5, 3, 1], t)
    xt = tensor(x)
    with torch.no_grad():
        plain = mha(xt, xt, xt, need_weights=False)[0]
        padded = mha(xt, xt, xt, key_padding_mask=tensor(~mask), need_weights=False)[0]
        causal = mha(xt, xt, xt, key_padding_mask=tensor(~mask), attn_mask=causal_disallowed(t),
                     need_weights=False)[0]
    out.update(params_of("mha_self", mha))
    out.update({"mha_self/x": x, "mha_self/mask": mask, "mha_self/y_plain": plain.numpy(),
                "mha_self/y_padded": padded.numpy(), "mha_self/y_causal_padded": causal.numpy()})

    # ---- cross-attention, key/value width 6
    t_q, t_k, kv_width = 4, 6, 6
    mha = torch.nn.MultiheadAttention(WIDTH, HEADS, kdim=kv_width, vdim=kv_width,
                                      batch_first=True).double().train()
    randomize(mha, gen)
    x_q = rng.standard_normal((BATCH, t_q, WIDTH))
    x_kv = rng.standard_normal((BATCH, t_k, kv_width))
    kv_mask = lengths_mask([6, 4, 2], t_k)
    allowed = rng.random((t_q, t_k)) < 0.6
    allowed[:, 0] = True  # key 0 is real in every row: no query is left without a key
    q, kv = tensor(x_q), tensor(x_kv)
    with torch.no_grad():
        plain = mha(q, kv, kv, need_weights=False)[0]
        padded = mha(q, kv, kv, key_padding_mask=tensor(~kv_mask), need_weights=False)[0]
        both = mha(q, kv, kv, key_padding_mask=tensor(~kv_mask), attn_mask=tensor(~allowed),
                   need_weights=False)[0]
    out.update(params_of("mha_cross", mha))
    out.update({"mha_cross/x_q": x_q, "mha_cross/x_kv": x_kv, "mha_cross/kv_mask": kv_mask,
                "mha_cross/attn_mask": allowed, "mha_cross/y_plain": plain.numpy(),
                "mha_cross/y_padded": padded.numpy(), "mha_cross/y_attn_mask_padded": both.numpy()})

    # ---- pre-LN encoder layer
    enc = torch.nn.TransformerEncoderLayer(WIDTH, HEADS, MLP, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True).double().train()
    randomize(enc, gen)
    x = rng.standard_normal((BATCH, t, WIDTH))
    mask = lengths_mask([5, 2, 1], t)
    with torch.no_grad():
        plain = enc(tensor(x))
        causal = enc(tensor(x), src_mask=causal_disallowed(t), src_key_padding_mask=tensor(~mask))
    out.update(params_of("encoder", enc))
    out.update({"encoder/x": x, "encoder/mask": mask, "encoder/y_plain": plain.numpy(),
                "encoder/y_causal_padded": causal.numpy()})

    # ---- pre-LN decoder layer
    s = 6
    dec = torch.nn.TransformerDecoderLayer(WIDTH, HEADS, MLP, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True).double().train()
    randomize(dec, gen)
    x = rng.standard_normal((BATCH, t, WIDTH))
    memory = rng.standard_normal((BATCH, s, WIDTH))
    mask = lengths_mask([5, 3, 2], t)
    memory_mask = lengths_mask([6, 1, 4], s)
    xt, mt = tensor(x), tensor(memory)
    with torch.no_grad():
        plain = dec(xt, mt)
        causal = dec(xt, mt, tgt_mask=causal_disallowed(t))
        padded = dec(xt, mt, tgt_mask=causal_disallowed(t), tgt_key_padding_mask=tensor(~mask),
                     memory_key_padding_mask=tensor(~memory_mask))
    out.update(params_of("decoder", dec))
    out.update({"decoder/x": x, "decoder/memory": memory, "decoder/mask": mask,
                "decoder/memory_mask": memory_mask, "decoder/y_plain": plain.numpy(),
                "decoder/y_causal": causal.numpy(), "decoder/y_causal_padded": padded.numpy()})

    for key, value in out.items():
        assert value.dtype != object, key
        if value.dtype.kind == "f":
            assert value.dtype == np.float64 and np.isfinite(value).all(), key
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {len(out)} arrays to {OUT}")


if __name__ == "__main__":
    main()
