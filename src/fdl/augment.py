r"""Image augmentations: pure, jit-able transforms of an image batch, one random draw per example.

Images are NHWC batches ``(B, H, W, C)`` of floats. Each transform has two layers:

* a **deterministic atom** that applies given per-example parameters: :func:`shift` (integer
  offsets), :func:`rotate` (angles) and :func:`resized_crop` (boxes);
* a **random transform** ``fn(key, images, ...)`` that draws those parameters, one draw per
  example, and applies the atom: :func:`random_shift`, :func:`random_rotation`,
  :func:`random_resized_crop`, :func:`gaussian_noise`.

**Keys.** ``key`` is one PRNG key, split into ``B`` keys (one per example, as
:func:`per_example_keys` does), or a ``(B,)`` array of keys, one per example. Each example's
draw is a function of its own key alone (``jax.vmap`` over the keys), so a fixed key gives the
same batch every time, and the examples of a batch get different transforms. :func:`compose`
chains random transforms, each with its own key.

**Resampling.** A pixel ``(i, j)`` has its centre at integer coordinates. :func:`rotate` and
:func:`resized_crop` map each output pixel back to a source point (the inverse map) and read it
by bilinear interpolation (``jax.scipy.ndimage.map_coordinates``, ``order=1``); a source point
outside the image reads 0 (the background of the digits). At integer source points the
interpolation is exact, so the identity map returns the images bit for bit.

The transforms keep the batch's shape and dtype and are differentiable in the pixels.

Example:
    >>> import functools, jax, jax.numpy as jnp
    >>> from fdl.augment import compose, random_rotation, random_shift
    >>> augment = compose(functools.partial(random_shift, max_shift=1),
    ...                   functools.partial(random_rotation, max_angle=15.0))
    >>> x = jnp.ones((4, 8, 8, 1))
    >>> augment(jax.random.key(0), x).shape
    (4, 8, 8, 1)

References:
    P. Y. Simard, D. Steinkraus and J. C. Platt, "Best Practices for Convolutional Neural Networks
    Applied to Visual Document Analysis", ICDAR 2003 (shifts, rotations, elastic distortions).
    T. Chen, S. Kornblith, M. Norouzi and G. Hinton, "A Simple Framework for Contrastive Learning
    of Visual Representations", ICML 2020 (random resized crops, the augmentation SimCLR most
    depends on).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_non_negative_finite, check_non_negative_int

__all__ = [
    "Augmentation",
    "per_example_keys",
    "shift",
    "rotate",
    "resized_crop",
    "random_shift",
    "random_rotation",
    "random_resized_crop",
    "gaussian_noise",
    "compose",
]

Augmentation = Callable[[jax.Array, jax.Array], jax.Array]
"""A random transform ``augment(key, images) -> images`` (settings bound with ``functools.partial``)."""

# ------------------------------------------------------------------------------------ checks


def _check_images(images: Any) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"`images` must be a batch (B, H, W, C), got shape {images.shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(f"`images` must have a floating dtype, got {images.dtype}")
    return images


def _check_per_example(name: str, values: Any, images: jax.Array, trailing: tuple[int, ...]) -> jax.Array:
    values = jnp.asarray(values)
    want = (images.shape[0], *trailing)
    if values.shape != want:
        raise ValueError(
            f"`{name}` must have shape {want} (one per example of `images` {images.shape}), got {values.shape}"
        )
    return values


def _check_range(name: str, value: Any, lo: float, hi: float) -> tuple[float, float]:
    """A pair ``(a, b)`` of numbers with ``lo <= a <= b <= hi``."""
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    if ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        a, b = float(value[0]), float(value[1])
        if lo <= a <= b <= hi:
            return a, b
    raise ValueError(f"`{name}` must be a pair (a, b) with {lo} <= a <= b <= {hi}, got {value!r}")


def per_example_keys(key: Any, batch_size: int) -> jax.Array:
    """``(batch_size,)`` keys: ``key`` split when it is one key, or ``key`` itself when it already
    holds one key per example.

    Raises:
        TypeError: ``key`` is not a PRNG key (new-style ``jax.random.key`` or a raw ``uint32``
            key).
        ValueError: ``key`` is an array of keys whose length is not ``batch_size``.

    >>> import jax
    >>> per_example_keys(jax.random.key(0), 3).shape
    (3,)
    """
    key = jnp.asarray(key)
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = key.dtype == jnp.uint32 and key.ndim >= 1 and key.shape[-1] == 2
    if not (typed or raw):
        raise TypeError(
            f"`key` must be a PRNG key (jax.random.key) or one per example, got {key.dtype} {key.shape}"
        )
    key_shape = key.shape if typed else key.shape[:-1]
    if key_shape == ():
        return jax.random.split(key, batch_size)
    if key_shape != (batch_size,):
        raise ValueError(
            f"`key` must be one PRNG key or one per example ({batch_size} for a batch of {batch_size}), "
            f"got {key_shape[0] if len(key_shape) == 1 else key_shape} keys"
        )
    return key


# ---------------------------------------------------------------------- deterministic atoms


def _coordinate_dtype(dtype: Any) -> Any:
    """The dtype sampling points are computed in: at least float32, since a bfloat16 or float16
    pixel position is off by up to a quarter pixel on a 64-pixel image."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def _sample(image: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """Bilinear reads of ``image`` ``(H, W, C)`` at the points ``(rows, cols)`` ``(H', W')``,
    0 outside: ``(H', W', C)`` in ``image``'s dtype (interpolated in the points' dtype)."""
    plane_dtype = rows.dtype

    def one_channel(plane: jax.Array) -> jax.Array:  # (H, W) -> (H', W')
        return jax.scipy.ndimage.map_coordinates(
            plane.astype(plane_dtype), [rows, cols], order=1, mode="constant", cval=0.0
        )

    return jax.vmap(one_channel, in_axes=2, out_axes=2)(image).astype(image.dtype)


def shift(images: Any, offsets: Any) -> jax.Array:
    r"""Move each image by whole pixels, zeros filling in.

    .. math::

        y_b[i, j] = \begin{cases} x_b[i - \Delta_{b,0},\, j - \Delta_{b,1}] & \text{inside the image}
        \\ 0 & \text{otherwise} \end{cases}

    so a positive :math:`\Delta_{b,0}` moves image :math:`b` down, a positive
    :math:`\Delta_{b,1}` right.

    Args:
        images: ``(B, H, W, C)`` floats.
        offsets: ``(B, 2)`` integers :math:`(\Delta_{\text{rows}}, \Delta_{\text{cols}})`.

    Returns:
        ``(B, H, W, C)`` shifted images, in the dtype of ``images``.

    Raises:
        ValueError: ``images`` not 4-D, ``offsets`` not ``(B, 2)``.
        TypeError: ``images`` not floating, ``offsets`` not integers.

    >>> import jax.numpy as jnp
    >>> x = jnp.arange(3.0).reshape(1, 1, 3, 1)
    >>> shift(x, jnp.array([[0, 1]]))[0, 0, :, 0].tolist()
    [0.0, 0.0, 1.0]
    """
    images = _check_images(images)
    offsets = _check_per_example("offsets", offsets, images, (2,))
    if not jnp.issubdtype(offsets.dtype, jnp.integer):
        raise TypeError(f"`offsets` must be integers (whole pixels), got {offsets.dtype}")
    _, height, width, _ = images.shape

    def one(image: jax.Array, offset: jax.Array) -> jax.Array:
        rows = jnp.arange(height) - offset[0]  # (H,) source rows
        cols = jnp.arange(width) - offset[1]  # (W,)
        inside = ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]  # (H, W)
        moved = image[jnp.clip(rows, 0, height - 1)][:, jnp.clip(cols, 0, width - 1)]  # (H, W, C)
        return jnp.where(inside[:, :, None], moved, jnp.zeros((), image.dtype))

    return jax.vmap(one)(images, offsets.astype(jnp.int32))


def rotate(images: Any, angles: Any) -> jax.Array:
    r"""Rotate each image about its centre by ``angles`` degrees, counter-clockwise as displayed
    (row 0 at the top), with bilinear interpolation and zeros outside.

    With the centre :math:`c = ((H - 1)/2, (W - 1)/2)` and :math:`(u, v) = (j - c_1, i - c_0)`
    the output pixel's offset from it (column, row), output pixel :math:`(i, j)` reads the source
    point

    .. math::

        \text{row} = c_0 + u \sin\theta + v \cos\theta, \qquad
        \text{col} = c_1 + u \cos\theta - v \sin\theta,

    the inverse rotation (the row axis points down, hence the signs). ``angles`` of 90 on a
    square image give ``numpy.rot90`` over the image axes.

    Args:
        images: ``(B, H, W, C)`` floats.
        angles: ``(B,)`` angles :math:`\theta` in degrees (any value; jit-traced is fine).

    Returns:
        ``(B, H, W, C)`` rotated images, in the dtype of ``images``.

    Raises:
        ValueError: ``images`` not 4-D, ``angles`` not ``(B,)``.
        TypeError: ``images`` not floating.

    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0.0, 1.0], [0.0, 0.0]]).reshape(1, 2, 2, 1)  # top right
    >>> rotate(x, jnp.array([90.0]))[0, :, :, 0].round(4).tolist()  # to the top left
    [[1.0, 0.0], [0.0, 0.0]]
    """
    images = _check_images(images)
    angles = _check_per_example("angles", angles, images, ())
    _, height, width, _ = images.shape
    centre_row, centre_col = (height - 1) / 2, (width - 1) / 2
    coordinate = _coordinate_dtype(images.dtype)
    v, u = jnp.meshgrid(
        jnp.arange(height, dtype=coordinate) - centre_row,
        jnp.arange(width, dtype=coordinate) - centre_col,
        indexing="ij",
    )  # (H, W) row and column offsets from the centre

    def one(image: jax.Array, angle: jax.Array) -> jax.Array:
        theta = jnp.deg2rad(angle.astype(coordinate))
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        return _sample(image, centre_row + u * sin + v * cos, centre_col + u * cos - v * sin)

    return jax.vmap(one)(images, angles)


def resized_crop(images: Any, boxes: Any) -> jax.Array:
    r"""Cut a box out of each image and resize it to the full ``(H, W)`` (bilinear, zeros outside).

    A box ``(top, left, height, width)`` in pixels (floats) is stretched over the output; output
    pixel :math:`(i, j)` reads the source point

    .. math::

        \text{row} = \text{top} + (i + \tfrac12)\,\frac{\text{height}}{H} - \tfrac12, \qquad
        \text{col} = \text{left} + (j + \tfrac12)\,\frac{\text{width}}{W} - \tfrac12,

    which maps the output's pixel edges onto the box's edges (the convention of
    ``jax.image.resize``). The box ``(0, 0, H, W)`` is the identity.

    Args:
        images: ``(B, H, W, C)`` floats.
        boxes: ``(B, 4)`` boxes ``(top, left, height, width)`` in pixels.

    Returns:
        ``(B, H, W, C)`` images, in the dtype of ``images``.

    Raises:
        ValueError: ``images`` not 4-D, ``boxes`` not ``(B, 4)``.
        TypeError: ``images`` not floating.

    >>> import jax.numpy as jnp
    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> resized_crop(x, jnp.array([[0.0, 0.0, 4.0, 4.0]]))[0, :, :, 0].tolist() == x[0, :, :, 0].tolist()
    True
    """
    images = _check_images(images)
    coordinate = _coordinate_dtype(images.dtype)
    boxes = _check_per_example("boxes", boxes, images, (4,)).astype(coordinate)
    _, height, width, _ = images.shape
    i = jnp.arange(height, dtype=coordinate)[:, None] + 0.5  # (H, 1) output pixel centres
    j = jnp.arange(width, dtype=coordinate)[None, :] + 0.5  # (1, W)

    def one(image: jax.Array, box: jax.Array) -> jax.Array:
        top, left, box_height, box_width = box[0], box[1], box[2], box[3]
        rows = jnp.broadcast_to(top + i * (box_height / height) - 0.5, (height, width))
        cols = jnp.broadcast_to(left + j * (box_width / width) - 0.5, (height, width))
        return _sample(image, rows, cols)

    return jax.vmap(one)(images, boxes)


# ---------------------------------------------------------------------- random transforms


def random_shift(key: Any, images: Any, max_shift: int = 1) -> jax.Array:
    r"""Shift each image by its own offsets :math:`\Delta_{b,0}, \Delta_{b,1}`, drawn uniformly
    from the integers in :math:`[-s, s]` with :math:`s` = ``max_shift`` (:func:`shift`).

    The random-crop augmentation of CIFAR training (pad by :math:`s`, crop back at a random
    corner) is this transform with zero padding.

    Args:
        key: one PRNG key, or ``(B,)`` keys, one per example.
        images: ``(B, H, W, C)`` floats.
        max_shift: :math:`s \ge 0`, the largest shift in pixels along each axis.

    Raises:
        ValueError: a negative or non-integer ``max_shift``; bad images or keys (as
            :func:`shift`, :func:`per_example_keys`).
    """
    max_shift = check_non_negative_int("max_shift", max_shift)
    images = _check_images(images)
    keys = per_example_keys(key, images.shape[0])
    offsets = jax.vmap(lambda k: jax.random.randint(k, (2,), -max_shift, max_shift + 1))(keys)  # (B, 2)
    return shift(images, offsets)


def random_rotation(key: Any, images: Any, max_angle: float = 15.0) -> jax.Array:
    r"""Rotate each image by its own angle :math:`\theta_b \sim U(-a, a)` degrees, with :math:`a`
    = ``max_angle`` (:func:`rotate`).

    Args:
        key: one PRNG key, or ``(B,)`` keys, one per example.
        images: ``(B, H, W, C)`` floats.
        max_angle: :math:`a \in [0, 180]` degrees.

    Raises:
        ValueError: ``max_angle`` outside ``[0, 180]``; bad images or keys.
    """
    max_angle = check_non_negative_finite("max_angle", max_angle)
    if max_angle > 180:
        raise ValueError(f"`max_angle` must be in [0, 180] degrees, got {max_angle!r}")
    images = _check_images(images)
    keys = per_example_keys(key, images.shape[0])
    angles = jax.vmap(lambda k: jax.random.uniform(k, (), images.dtype, -max_angle, max_angle))(keys)  # (B,)
    return rotate(images, angles)


def random_resized_crop(
    key: Any,
    images: Any,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> jax.Array:
    r"""SimCLR's random resized crop: a box of random area and aspect ratio at a random place,
    resized back to ``(H, W)`` (:func:`resized_crop`).

    Per example, the area fraction :math:`s \sim U(\text{scale})`, the aspect ratio
    :math:`r = w / h` log-uniform in ``ratio``, then

    .. math::

        h = \min\bigl(H, \sqrt{s H W / r}\bigr), \qquad w = \min\bigl(W, \sqrt{s H W r}\bigr),
        \qquad \text{top} \sim U(0, H - h), \qquad \text{left} \sim U(0, W - w).

    Differs from torchvision's ``RandomResizedCrop``: a box that does not fit is clipped to the
    image instead of redrawn (up to ten times) and falling back to a centre crop, so the draw is
    one fixed computation under ``jit``.

    Args:
        key: one PRNG key, or ``(B,)`` keys, one per example.
        images: ``(B, H, W, C)`` floats.
        scale: ``(lo, hi)``, the range of the area fraction, ``0 < lo <= hi <= 1``.
        ratio: ``(lo, hi)``, the range of the aspect ratio, ``0 < lo <= hi``.

    Raises:
        ValueError: a bad ``scale`` or ``ratio``; bad images or keys.
    """
    scale = _check_range("scale", scale, 0.0, 1.0)
    ratio = _check_range("ratio", ratio, 0.0, math.inf)
    if scale[0] <= 0 or ratio[0] <= 0:
        bad = "scale" if scale[0] <= 0 else "ratio"
        raise ValueError(
            f"`{bad}` must be a pair (a, b) with 0 < a <= b, got {(scale if bad == 'scale' else ratio)!r}"
        )
    images = _check_images(images)
    _, height, width, _ = images.shape
    dtype = _coordinate_dtype(images.dtype)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])

    def draw(k: jax.Array) -> jax.Array:
        area_key, ratio_key, top_key, left_key = jax.random.split(k, 4)
        s = jax.random.uniform(area_key, (), dtype, scale[0], scale[1])
        r = jnp.exp(jax.random.uniform(ratio_key, (), dtype, log_lo, log_hi))
        box_height = jnp.minimum(height, jnp.sqrt(s * (height * width) / r))
        box_width = jnp.minimum(width, jnp.sqrt(s * (height * width) * r))
        top = jax.random.uniform(top_key, (), dtype) * (height - box_height)
        left = jax.random.uniform(left_key, (), dtype) * (width - box_width)
        return jnp.stack([top, left, box_height, box_width])  # (4,)

    boxes = jax.vmap(draw)(per_example_keys(key, images.shape[0]))  # (B, 4)
    return resized_crop(images, boxes)


def gaussian_noise(key: Any, images: Any, std: float = 0.1) -> jax.Array:
    r"""Add independent Gaussian noise to every pixel: :math:`y = x + \sigma \epsilon`,
    :math:`\epsilon \sim \mathcal N(0, I)`, drawn per example from its own key.

    Args:
        key: one PRNG key, or ``(B,)`` keys, one per example.
        images: ``(B, H, W, C)`` floats.
        std: :math:`\sigma \ge 0`.

    Raises:
        ValueError: a negative or non-finite ``std``; bad images or keys.
    """
    std = check_non_negative_finite("std", std)
    images = _check_images(images)
    keys = per_example_keys(key, images.shape[0])
    noise = jax.vmap(lambda k: jax.random.normal(k, images.shape[1:], images.dtype))(keys)  # (B, H, W, C)
    return images + std * noise


def compose(*augmentations: Augmentation) -> Augmentation:
    """One augmentation that applies ``augmentations`` in order, each with its own keys: the
    key is split per example (:func:`per_example_keys`), then each example's key into one key per
    augmentation, so an example's transforms depend on its own key alone.

    Raises:
        TypeError: an augmentation that is not callable.

    >>> import functools, jax, jax.numpy as jnp
    >>> noise = compose(functools.partial(gaussian_noise, std=0.0))
    >>> bool(jnp.all(noise(jax.random.key(0), jnp.ones((2, 3, 3, 1))) == 1.0))
    True
    """
    for i, fn in enumerate(augmentations):
        if not callable(fn):
            raise TypeError(
                f"each augmentation must be a callable augment(key, images), got {fn!r} at position {i}"
            )

    count = len(augmentations)

    def augment(key: jax.Array, images: jax.Array) -> jax.Array:
        images = _check_images(images)
        keys = per_example_keys(key, images.shape[0])  # (B,): each example splits its own key
        split = jax.vmap(lambda k: jax.random.split(k, count), out_axes=1)(keys)  # (count, B)
        for fn, k in zip(augmentations, split, strict=True):
            images = fn(k, images)
        return images

    return augment
