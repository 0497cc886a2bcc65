"""A causal, padded attention matrix and its row sums; the softmax's saturation without 1/sqrt(d)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import fdl

T, REAL = 8, 6  # a sequence of 8 positions, the last 2 padding
WIDTHS = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
KEYS, QUERIES = 16, 500


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def compute() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    kq, kk = jax.random.split(jax.random.key(0))
    q = jax.random.normal(kq, (1, T, 1, 16))  # B = 1, T, H = 1, d = 16
    k = jax.random.normal(kk, (1, T, 1, 16))
    real = jnp.arange(T)[None, :] < REAL  # (1, T)
    weights = np.asarray(fdl.nn.attention_weights(q, k, mask=real, causal=True)[0, 0], np.float64)
    above = np.triu(np.ones((T, T), bool), k=1)
    assert np.all(weights[above] == 0.0) and np.all(weights[:, REAL:] == 0.0)  # exact zeros
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    out["weights"], out["row_sums"] = weights, weights.sum(axis=1)

    rng = np.random.default_rng(0)
    scaled, unscaled = [], []
    for d in WIDTHS:
        q = rng.standard_normal((QUERIES, 1, 1, int(d)))  # each query its own batch entry
        k = rng.standard_normal((QUERIES, KEYS, 1, int(d)))
        logits = np.einsum("bqhd,bkhd->bhqk", q, k)  # q . k, (QUERIES, 1, 1, KEYS)
        for top, scale in ((scaled, np.sqrt(d)), (unscaled, 1.0)):
            a = softmax(logits / scale)
            top.append(float(np.mean(np.max(a, axis=-1))))
            if d == 64:  # the same numbers from fdl (one width, to keep this fast)
                fdl_weights = fdl.nn.attention_weights(
                    jnp.asarray(q * np.sqrt(d) / scale, jnp.float32), jnp.asarray(k, jnp.float32)
                )
                np.testing.assert_allclose(fdl_weights, a, rtol=1e-3, atol=1e-5)
    out["widths"], out["top_scaled"], out["top_unscaled"] = WIDTHS, np.array(scaled), np.array(unscaled)
    # the page's claims: unscaled, the softmax goes one-hot with the width; scaled, it does not move
    assert unscaled[list(WIDTHS).index(256)] > 0.9 and unscaled[0] < 0.25  # 0.21 -> 0.92
    assert 0.19 < min(scaled) and max(scaled) < 0.26  # stays between 0.21 and 0.25
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((11, 4.4), dpi=110)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    allowed = np.tril(np.ones((T, T), bool)) & (np.arange(T) < REAL)[None, :]
    shown = np.ma.masked_where(~allowed, data["weights"])  # the masked cells drawn gray
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = left.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0)
    for i, total in enumerate(data["row_sums"]):
        left.text(T - 0.35, i, f"$\\Sigma_j$ = {total:.2f}", va="center", ha="left", fontsize=8)
    left.set_xlim(-0.5, T + 1.6)
    left.set_xticks(range(T))
    left.set_yticks(range(T))
    left.set_xlabel(f"key position $j$ (keys $j \\geq {REAL}$: padding)")
    left.set_ylabel("query position $i$")
    left.set_title("Causal + padding mask (gray: weight exactly 0)")
    fig.colorbar(image, ax=left, fraction=0.04, pad=0.02)

    right.semilogx(data["widths"], data["top_unscaled"], "o-", color="#d62728", label="softmax$(q \\cdot k)$")
    right.semilogx(
        data["widths"], data["top_scaled"], "o-", color="#1f77b4", label="softmax$(q \\cdot k / \\sqrt{d})$"
    )
    right.axhline(1 / KEYS, color="gray", linestyle="--", label=f"uniform, $1/{KEYS}$")
    right.set_xscale("log", base=2)
    right.set_ylim(0, 1.02)
    right.set_xlabel("head width $d$")
    right.set_ylabel(f"mean largest weight of a row ({KEYS} keys)")
    right.set_title("Without $1/\\sqrt{d}$ the softmax turns one-hot")
    right.legend(loc="center right")
    fdl.plot.save_png(fig, path)
