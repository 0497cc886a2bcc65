"""Image augmentations (fdl.augment) against hand-computed moves and their stated keying."""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import augment

RANDOM = {
    "random_shift": functools.partial(augment.random_shift, max_shift=2),
    "random_rotation": functools.partial(augment.random_rotation, max_angle=30.0),
    "random_resized_crop": functools.partial(augment.random_resized_crop, scale=(0.4, 0.9)),
    "gaussian_noise": functools.partial(augment.gaussian_noise, std=0.1),
}


def _images(key, batch=6, height=8, width=8, channels=2, dtype=jnp.float32):
    return jax.random.uniform(key, (batch, height, width, channels), dtype)


# ------------------------------------------------------------------------------------ shift


def test_shift_by_zero_is_the_identity(key):
    x = _images(key)
    chex.assert_trees_all_equal(augment.shift(x, jnp.zeros((6, 2), jnp.int32)), x)


@pytest.mark.parametrize("offset", [(1, 2), (-2, 1), (0, -3), (3, 3)])
def test_shift_moves_each_pixel_by_the_offset(key, offset):
    x = np.asarray(_images(key, batch=1, channels=1))
    dy, dx = offset
    expected = np.zeros_like(x)
    for i in range(8):
        for j in range(8):
            if 0 <= i - dy < 8 and 0 <= j - dx < 8:
                expected[0, i, j] = x[0, i - dy, j - dx]
    np.testing.assert_array_equal(augment.shift(x, jnp.array([offset])), expected)


def test_a_shift_past_the_edge_leaves_zeros(key):
    x = _images(key, batch=2)
    out = augment.shift(x, jnp.array([[8, 0], [0, -9]]))
    chex.assert_trees_all_equal(out, jnp.zeros_like(x))


def test_shift_moves_each_example_by_its_own_offset():
    x = jnp.zeros((2, 5, 5, 1)).at[:, 2, 2, 0].set(1.0)  # a dot in the centre
    out = augment.shift(x, jnp.array([[1, 0], [0, -2]]))
    assert float(out[0, 3, 2, 0]) == 1.0 and float(out[1, 2, 0, 0]) == 1.0
    assert float(out.sum()) == 2.0


# ------------------------------------------------------------------------------------ rotate


def test_rotation_by_zero_is_the_identity(key):
    x = _images(key)
    chex.assert_trees_all_equal(augment.rotate(x, jnp.zeros(6)), x)


@pytest.mark.parametrize("quarter_turns", [1, 2, 3, 4])
def test_quarter_turns_are_numpy_rot90(key, quarter_turns):
    x = _images(key, height=7, width=7)
    out = augment.rotate(x, jnp.full((6,), 90.0 * quarter_turns))
    np.testing.assert_allclose(out, np.rot90(np.asarray(x), quarter_turns, axes=(1, 2)), atol=2e-6)


def test_rotation_by_45_degrees_interpolates_by_hand():
    # A dot right of the centre of a 3x3 image. The top-right output pixel (u, v) = (1, -1) reads
    # row 1 + sin 45 - cos 45 = 1, col 1 + cos 45 + sin 45 = 1 + sqrt 2: between the dot (weight
    # 1 - (sqrt 2 - 1)) and the zero outside the image.
    x = jnp.zeros((1, 3, 3, 1)).at[0, 1, 2, 0].set(1.0)
    out = augment.rotate(x, jnp.array([45.0]))
    assert float(out[0, 0, 2, 0]) == pytest.approx(2 - math.sqrt(2), abs=1e-6)
    assert float(out[0, 2, 2, 0]) == pytest.approx(0.0, abs=1e-6)  # turned up, not down


def test_a_rotation_of_a_wide_image_keeps_its_shape(key):
    x = _images(key, height=6, width=10)
    assert augment.rotate(x, jnp.full((6,), 10.0)).shape == x.shape


# -------------------------------------------------------------------------------- resized crop


def test_the_full_box_is_the_identity(key):
    x = _images(key, height=8, width=6)
    boxes = jnp.tile(jnp.array([0.0, 0.0, 8.0, 6.0]), (6, 1))
    chex.assert_trees_all_equal(augment.resized_crop(x, boxes), x)


def test_a_crop_of_a_linear_image_reads_the_mapped_points():
    rows, cols = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
    x = jnp.asarray((10 * rows + cols)[None, :, :, None], jnp.float32)  # linear: read exactly
    out = augment.resized_crop(x, jnp.array([[1.0, 1.0, 2.0, 2.0]]))[0, :, :, 0]
    # output pixel i reads 1 + (i + 1/2) * 2/4 - 1/2 = 0.75 + i/2, inside the image
    read = 0.75 + 0.5 * np.arange(4.0)
    np.testing.assert_allclose(out, 10 * read[:, None] + read[None, :], rtol=1e-6)


def test_bfloat16_images_are_resampled_at_float32_points():
    # a bfloat16 pixel position on a 64-pixel image is off by up to a quarter pixel: the points
    # are computed in float32, so the only difference from float32 is the output's rounding
    x = jax.random.uniform(jax.random.key(3), (2, 64, 64, 1)).astype(jnp.bfloat16)
    angles, boxes = jnp.array([13.0, -7.0]), jnp.array([[3.3, 5.1, 50.7, 41.9], [0.0, 10.5, 60.2, 30.3]])
    for fn, arg in ((augment.rotate, angles), (augment.resized_crop, boxes)):
        low = fn(x, arg)
        high = fn(x.astype(jnp.float32), arg)
        assert low.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(low, np.float32), np.asarray(high), atol=2.0**-8)


# ------------------------------------------------------------------------- random transforms


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_transforms_keep_shape_and_dtype(keys, name):
    for dtype in (jnp.float32, jnp.bfloat16):
        x = _images(next(keys), dtype=dtype)
        out = RANDOM[name](next(keys), x)
        assert out.shape == x.shape and out.dtype == dtype, (name, dtype, out.shape, out.dtype)


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_transforms_are_deterministic_for_a_key_and_jit(keys, name):
    x, key = _images(next(keys)), next(keys)
    fn = RANDOM[name]
    chex.assert_trees_all_equal(fn(key, x), fn(key, x))
    chex.clear_trace_counter()  # the counter is per code object, shared by the parameters

    @jax.jit
    @chex.assert_max_traces(n=1)
    def traced(key, x):
        return fn(key, x)

    chex.assert_trees_all_close(traced(key, x), fn(key, x), atol=1e-6)
    traced(next(keys), x)  # a new key does not retrace
    assert not jnp.allclose(fn(next(keys), x), fn(key, x))  # and draws another transform


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_examples_get_different_transforms(keys, name):
    x = jnp.tile(_images(next(keys), batch=1), (16, 1, 1, 1))  # one image, 16 times
    out = np.asarray(RANDOM[name](next(keys), x)).reshape(16, -1)
    distinct = len({out[i].tobytes() for i in range(16)})
    # shifts by up to 2 pixels have 25 outcomes (12 distinct expected among 16); the others are
    # continuous draws, all distinct
    assert distinct >= (8 if name == "random_shift" else 16), (name, distinct)


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_each_example_depends_on_its_own_key_alone(keys, name):
    x = _images(next(keys))
    per_example = jax.random.split(next(keys), 6)
    full = RANDOM[name](per_example, x)
    part = RANDOM[name](per_example[2:4], x[2:4])  # the same keys, a smaller batch
    chex.assert_trees_all_close(part, full[2:4], atol=1e-6)
    # one key is the same as its per-example split
    key = next(keys)
    chex.assert_trees_all_close(RANDOM[name](key, x), RANDOM[name](jax.random.split(key, 6), x), atol=1e-6)


def test_random_shift_covers_every_offset_in_range(key):
    x = jnp.zeros((400, 7, 7, 1)).at[:, 3, 3, 0].set(1.0)
    out = np.asarray(augment.random_shift(key, x, max_shift=1))
    positions = {tuple(int(v) - 3 for v in np.argwhere(o[:, :, 0] == 1.0)[0]) for o in out}
    assert positions == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    assert np.all(out.reshape(400, -1).sum(axis=1) == 1.0)  # whole-pixel moves: nothing lost


def test_zero_settings_are_the_identity(keys):
    x = _images(next(keys), height=8, width=8)
    chex.assert_trees_all_equal(augment.random_shift(next(keys), x, max_shift=0), x)
    chex.assert_trees_all_equal(augment.random_rotation(next(keys), x, max_angle=0.0), x)
    chex.assert_trees_all_equal(augment.gaussian_noise(next(keys), x, std=0.0), x)
    crop = augment.random_resized_crop(next(keys), x, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    chex.assert_trees_all_close(crop, x, atol=1e-6)


def test_random_rotation_stays_within_max_angle(key):
    # the angle of a dot's move about the centre never exceeds max_angle
    x = jnp.zeros((200, 21, 21, 1)).at[:, 10, 18, 0].set(1.0)  # 8 pixels right of the centre
    out = np.asarray(augment.random_rotation(key, x, max_angle=20.0))[..., 0]
    angles = []
    for image in out:
        rows, cols = np.nonzero(image > 0)
        w = image[rows, cols]
        row, col = np.sum(w * rows) / w.sum(), np.sum(w * cols) / w.sum()  # the dot's centre
        angles.append(np.degrees(np.arctan2(-(row - 10), col - 10)))  # counter-clockwise
    angles = np.array(angles)
    assert np.all(np.abs(angles) <= 20.5) and angles.min() < -15 and angles.max() > 15


def test_gaussian_noise_has_the_stated_spread(key):
    x = jnp.full((64, 8, 8, 1), 0.5)
    noise = np.asarray(augment.gaussian_noise(key, x, std=0.3)) - 0.5
    assert abs(noise.std() - 0.3) < 0.3 * 0.05 and abs(noise.mean()) < 0.02  # 4096 draws


def test_random_resized_crop_draws_boxes_inside_the_image_with_the_area_in_scale(key):
    # Channel 0 holds each pixel's row, channel 1 its column: linear images, so the interior
    # output pixels read the source point exactly, row = top + (i + 1/2) h / H - 1/2.
    rows, cols = np.meshgrid(np.arange(12.0), np.arange(12.0), indexing="ij")
    x = jnp.tile(jnp.asarray(np.stack([rows, cols], -1)[None], jnp.float32), (40, 1, 1, 1))
    out = np.asarray(augment.random_resized_crop(key, x, scale=(0.25, 0.5), ratio=(1.0, 1.0)))
    read_rows, read_cols = out[:, 1:-1, 5, 0], out[:, 5, 1:-1, 1]  # output pixels 1..10: inside
    height = (read_rows[:, -1] - read_rows[:, 0]) / 9 * 12
    width = (read_cols[:, -1] - read_cols[:, 0]) / 9 * 12
    top = read_rows[:, 0] - 1.5 * height / 12 + 0.5
    left = read_cols[:, 0] - 1.5 * width / 12 + 0.5
    np.testing.assert_allclose(height, width, rtol=1e-4)  # ratio (1, 1): square boxes
    area = height * width / 144
    assert np.all((area >= 0.25 - 1e-4) & (area <= 0.5 + 1e-4)), area
    assert area.min() < 0.3 and area.max() > 0.45  # the whole range is drawn
    assert np.all((top >= -1e-4) & (top + height <= 12 + 1e-4)), (top, height)
    assert np.all((left >= -1e-4) & (left + width <= 12 + 1e-4)), (left, width)
    assert np.ptp(top) > 2 and np.ptp(left) > 2  # at different places


def test_compose_applies_each_with_the_documented_keys(keys):
    x, key = _images(next(keys)), next(keys)
    first = functools.partial(augment.random_shift, max_shift=1)
    second = functools.partial(augment.gaussian_noise, std=0.2)
    split = jax.vmap(lambda k: jax.random.split(k, 2), out_axes=1)(jax.random.split(key, 6))  # (2, B)
    expected = second(split[1], first(split[0], x))
    chex.assert_trees_all_close(augment.compose(first, second)(key, x), expected, atol=1e-6)


# ------------------------------------------------------------------------------------ errors


def test_bad_images_are_rejected(key):
    with pytest.raises(ValueError, match=r"`images` must be a batch \(B, H, W, C\), got shape \(8, 8, 1\)"):
        augment.random_shift(key, jnp.zeros((8, 8, 1)))
    with pytest.raises(TypeError, match="`images` must have a floating dtype, got int32"):
        augment.rotate(jnp.zeros((2, 8, 8, 1), jnp.int32), jnp.zeros(2))


def test_per_example_arguments_must_match_the_batch():
    x = jnp.zeros((3, 8, 8, 1))
    with pytest.raises(ValueError, match=r"`offsets` must have shape \(3, 2\) .* got \(2, 2\)"):
        augment.shift(x, jnp.zeros((2, 2), jnp.int32))
    with pytest.raises(TypeError, match="`offsets` must be integers"):
        augment.shift(x, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"`angles` must have shape \(3,\) .* got \(3, 1\)"):
        augment.rotate(x, jnp.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"`boxes` must have shape \(3, 4\)"):
        augment.resized_crop(x, jnp.zeros((3, 3)))


def test_a_key_count_must_match_the_batch(key):
    x = jnp.zeros((4, 8, 8, 1))
    with pytest.raises(
        ValueError, match=r"one PRNG key or one per example \(4 for a batch of 4\), got 3 keys"
    ):
        augment.random_rotation(jax.random.split(key, 3), x)
    with pytest.raises(ValueError, match="got 5 keys"):
        augment.compose(augment.random_shift)(jax.random.split(key, 5), x)
    with pytest.raises(TypeError, match="`key` must be a PRNG key"):
        augment.gaussian_noise(jnp.zeros(4), x)


def test_bad_settings_are_rejected(key):
    x = jnp.zeros((2, 8, 8, 1))
    with pytest.raises(ValueError, match=r"`max_angle` must be in \[0, 180\] degrees, got 200.0"):
        augment.random_rotation(key, x, max_angle=200.0)
    with pytest.raises(ValueError, match="`max_angle` must be a non-negative finite number, got -5"):
        augment.random_rotation(key, x, max_angle=-5)
    with pytest.raises(ValueError, match="`max_shift` must be a non-negative integer, got -1"):
        augment.random_shift(key, x, max_shift=-1)
    with pytest.raises(ValueError, match=r"`max_shift` must be a non-negative integer, got 1\.5"):
        augment.random_shift(key, x, max_shift=1.5)
    with pytest.raises(ValueError, match=r"`std` must be a non-negative finite number, got -0\.1"):
        augment.gaussian_noise(key, x, std=-0.1)
    with pytest.raises(
        ValueError, match=r"`scale` must be a pair \(a, b\) with 0.0 <= a <= b <= 1.0, got \(0.5, 1.5\)"
    ):
        augment.random_resized_crop(key, x, scale=(0.5, 1.5))
    with pytest.raises(
        ValueError, match=r"`scale` must be a pair \(a, b\) with 0 < a <= b, got \(0.0, 1.0\)"
    ):
        augment.random_resized_crop(key, x, scale=(0.0, 1.0))
    with pytest.raises(
        ValueError, match=r"`ratio` must be a pair \(a, b\) with 0.0 <= a <= b <= inf, got \(2.0, 1.0\)"
    ):
        augment.random_resized_crop(key, x, ratio=(2.0, 1.0))
    with pytest.raises(TypeError, match=r"each augmentation must be a callable augment.*got 3 at position 1"):
        augment.compose(augment.random_shift, 3)
