"""Tests for fdl.data.idx: the IDX (MNIST) file format, raw and gzip-compressed."""

import gzip
import os

import numpy as np
import pytest

from fdl.data import load_idx, load_idx_dataset, save_idx

# (dtype, type code) as listed on LeCun's MNIST page.
DTYPES = [
    (np.uint8, 0x08),
    (np.int8, 0x09),
    (np.int16, 0x0B),
    (np.int32, 0x0C),
    (np.float32, 0x0D),
    (np.float64, 0x0E),
]
SHAPES = [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)]


def _header(code, shape):
    """Hand-built IDX header: 0x00 0x00, the type code, ndim, each dim as big-endian uint32."""
    return bytes([0, 0, code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)


def _values(dtype, shape):
    """Values that exercise every byte of the type: extremes, negatives, non-integers."""
    size = int(np.prod(shape))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        pool = np.array([info.min, info.max, 0, 1, info.max - 1, info.min + 1, 258], dtype=np.int64)
        pool = pool[(pool >= info.min) & (pool <= info.max)]
    else:
        info = np.finfo(dtype)
        pool = np.array([info.min, info.max, info.tiny, -0.0, 1.5, -2.25, np.pi, np.inf, -np.inf])
    return np.resize(pool, size).astype(dtype).reshape(shape)


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"ndim{len(s)}")
@pytest.mark.parametrize(("dtype", "code"), DTYPES, ids=[d.__name__ for d, _ in DTYPES])
def test_round_trip(tmp_path, dtype, code, shape, compressed):
    array = _values(dtype, shape)
    path = tmp_path / ("array.idx.gz" if compressed else "array.idx")
    save_idx(path, array)
    raw = path.read_bytes()
    if compressed:
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    # The bytes on disk are exactly the format: header, then big-endian row-major elements.
    assert raw == _header(code, shape) + array.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    loaded = load_idx(path)
    assert loaded.dtype == dtype and loaded.shape == shape
    assert loaded.dtype.isnative and loaded.flags.writeable
    np.testing.assert_array_equal(loaded, array)
    if np.issubdtype(dtype, np.floating):
        np.testing.assert_array_equal(np.signbit(loaded), np.signbit(array))  # -0.0 survives


def test_round_trip_nan_and_empty(tmp_path):
    save_idx(tmp_path / "nan.idx", np.array([np.nan, 1.0], dtype=np.float32))
    np.testing.assert_array_equal(load_idx(tmp_path / "nan.idx"), [np.nan, 1.0])
    save_idx(tmp_path / "empty.idx", np.zeros((0, 3), dtype=np.int16))
    empty = load_idx(tmp_path / "empty.idx")
    assert empty.shape == (0, 3) and empty.dtype == np.int16


def test_saving_is_deterministic(tmp_path):
    array = _values(np.int32, (4, 4))
    save_idx(tmp_path / "a.gz", array)
    save_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_save_accepts_a_str_path_and_jax_arrays(tmp_path):
    import jax.numpy as jnp

    path = os.path.join(tmp_path, "x-idx1-ubyte")
    save_idx(path, jnp.arange(5, dtype=jnp.uint8))
    np.testing.assert_array_equal(load_idx(path), np.arange(5, dtype=np.uint8))


def test_hand_built_uint8_file(tmp_path):
    data = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 253, 254, 255])
    loaded = load_idx(_write(tmp_path / "tiny-idx2-ubyte", data))
    expected = np.array([[0, 1, 2], [253, 254, 255]], dtype=np.uint8)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, expected)


def test_hand_built_int16_and_float32_are_big_endian(tmp_path):
    # 0x0102 = 258, 0xFFFE = -2.
    shorts = _header(0x0B, (2,)) + bytes([0x01, 0x02, 0xFF, 0xFE])
    np.testing.assert_array_equal(load_idx(_write(tmp_path / "s", shorts)), [258, -2])
    # 0x3FC00000 = 1.5, 0xC0100000 = -2.25 (IEEE 754 single precision).
    floats = _header(0x0D, (2,)) + bytes([0x3F, 0xC0, 0, 0, 0xC0, 0x10, 0, 0])
    np.testing.assert_array_equal(load_idx(_write(tmp_path / "f", floats)), [1.5, -2.25])


def test_gzip_is_detected_by_magic_not_name(tmp_path):
    data = _header(0x08, (3,)) + bytes([7, 8, 9])
    zipped = _write(tmp_path / "no-extension", gzip.compress(data))
    np.testing.assert_array_equal(load_idx(zipped), [7, 8, 9])
    raw_named_gz = _write(tmp_path / "looks-zipped.gz", data)
    np.testing.assert_array_equal(load_idx(raw_named_gz), [7, 8, 9])


def test_missing_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with pytest.raises(
        FileNotFoundError,
        match=r"IDX file not found: '.*train-images-idx3-ubyte\.gz' \(pass the path to an "
        r"MNIST-format file such as train-images-idx3-ubyte\[\.gz\]\)",
    ):
        load_idx(path)


def test_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"IDX path is a directory, not a file: '"):
        load_idx(tmp_path)


@pytest.mark.parametrize("size", [0, 1, 3])
def test_truncated_short_header(tmp_path, size):
    path = _write(tmp_path / "short", bytes([0, 0, 0x08, 1])[:size])
    with pytest.raises(
        ValueError,
        match=rf"truncated IDX header in '.*short': expected at least 4 bytes .*found {size}$",
    ):
        load_idx(path)


def test_truncated_dims(tmp_path):
    path = _write(tmp_path / "dims", _header(0x08, (60000, 28, 28))[:10])
    with pytest.raises(
        ValueError,
        match=r"truncated IDX header in '.*dims': expected 16 bytes for 3 dimensions, found 10",
    ):
        load_idx(path)


def test_zero_dimensions(tmp_path):
    path = _write(tmp_path / "scalar", bytes([0, 0, 0x08, 0, 42]))
    with pytest.raises(ValueError, match=r"IDX file '.*scalar' declares 0 dimensions"):
        load_idx(path)


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gzip"])
def test_truncated_data(tmp_path, compressed):
    data = _header(0x08, (2, 3)) + bytes(5)
    path = _write(tmp_path / "cut", gzip.compress(data) if compressed else data)
    with pytest.raises(
        ValueError,
        match=r"truncated IDX data in '.*cut': expected 6 bytes of data for shape \(2, 3\) of "
        r"uint8, found 5",
    ):
        load_idx(path)


def test_truncated_data_counts_bytes_of_wide_types(tmp_path):
    path = _write(tmp_path / "cut64", _header(0x0E, (3,)) + bytes(20))
    with pytest.raises(ValueError, match=r"expected 24 bytes of data for shape \(3,\) of float64, found 20"):
        load_idx(path)


def test_extra_data(tmp_path):
    path = _write(tmp_path / "long", _header(0x0C, (2,)) + bytes(11))
    with pytest.raises(
        ValueError,
        match=r"unexpected trailing data in IDX file '.*long': expected 8 bytes of data for "
        r"shape \(2,\) of int32, found 11 \(3 extra bytes\)",
    ):
        load_idx(path)


@pytest.mark.parametrize("first_two", [b"\x00\x01", b"\x50\x4b", b"\x89P"])
def test_wrong_magic(tmp_path, first_two):
    path = _write(tmp_path / "notidx", first_two + bytes([0x08, 1, 0, 0, 0, 1, 5]))
    hexes = " ".join(f"0x{b:02X}" for b in first_two)
    with pytest.raises(
        ValueError,
        match=rf"not an IDX file: '.*notidx' starts with bytes {hexes}, expected the magic "
        r"0x00 0x00",
    ):
        load_idx(path)


@pytest.mark.parametrize("code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_unknown_type_code(tmp_path, code):
    path = _write(tmp_path / "code", _header(code, (1,)) + bytes(8))
    with pytest.raises(
        ValueError,
        match=rf"unknown IDX type code 0x{code:02X} in '.*code'; valid codes: 0x08 \(uint8\), "
        r"0x09 \(int8\), 0x0B \(int16\), 0x0C \(int32\), 0x0D \(float32\), 0x0E \(float64\)$",
    ):
        load_idx(path)


def test_corrupt_gzip_truncated_stream(tmp_path):
    zipped = gzip.compress(_header(0x08, (100,)) + bytes(range(100)))
    path = _write(tmp_path / "cut.gz", zipped[: len(zipped) // 2])
    with pytest.raises(ValueError, match=r"corrupt gzip stream in IDX file '.*cut\.gz': "):
        load_idx(path)


def test_corrupt_gzip_damaged_bytes(tmp_path):
    zipped = bytearray(gzip.compress(_header(0x08, (100,)) + bytes(range(100))))
    zipped[-6] ^= 0xFF  # inside the CRC-32 trailer: the data no longer matches its checksum
    path = _write(tmp_path / "bad.gz", bytes(zipped))
    with pytest.raises(ValueError, match=r"corrupt gzip stream in IDX file '.*bad\.gz': "):
        load_idx(path)


def test_corrupt_gzip_garbage_after_magic(tmp_path):
    path = _write(tmp_path / "garbage", b"\x1f\x8b" + bytes(range(40)))
    with pytest.raises(ValueError, match=r"corrupt gzip stream in IDX file '.*garbage': "):
        load_idx(path)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros(3, dtype=np.int64), r"`array` has dtype int64, which IDX cannot store; "),
        (np.zeros(3, dtype=bool), r"`array` has dtype bool, which IDX cannot store; "),
        (np.zeros(3, dtype=np.float16), r"supported dtypes: uint8, int8, int16, int32, float32"),
        (np.uint8(3), r"`array` must have 1 to 255 dimensions to be stored as IDX, got 0"),
    ],
)
def test_save_errors(tmp_path, array, match):
    with pytest.raises(ValueError, match=match):
        save_idx(tmp_path / "out.idx", array)


# ---- load_idx_dataset ----------------------------------------------------------------------


def _mnist_like(tmp_path, n_images=4, n_labels=4, suffix=".gz"):
    """Write (n_images, 3, 2) uint8 images and n_labels uint8 labels; return the paths."""
    images = (np.arange(n_images * 6).reshape(n_images, 3, 2) * 37 % 256).astype(np.uint8)
    labels = (np.arange(n_labels) % 10).astype(np.uint8)
    images_path = tmp_path / f"images-idx3-ubyte{suffix}"
    labels_path = tmp_path / f"labels-idx1-ubyte{suffix}"
    save_idx(images_path, images)
    save_idx(labels_path, labels)
    return images, labels, images_path, labels_path


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_dataset_flat(tmp_path, suffix):
    images, labels, images_path, labels_path = _mnist_like(tmp_path, suffix=suffix)
    x, y = load_idx_dataset(images_path, labels_path)
    assert x.shape == (4, 6) and x.dtype == np.float32
    assert y.shape == (4,) and y.dtype == np.int32
    np.testing.assert_array_equal(x, images.reshape(4, 6).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, labels)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_dataset_image_layout(tmp_path):
    _, _, images_path, labels_path = _mnist_like(tmp_path)
    flat, _ = load_idx_dataset(images_path, labels_path)
    x, _ = load_idx_dataset(images_path, labels_path, flat=False)
    assert x.shape == (4, 3, 2, 1)
    np.testing.assert_array_equal(x, flat.reshape(4, 3, 2, 1))


def test_dataset_extremes_map_to_0_and_1(tmp_path):
    save_idx(tmp_path / "im", np.array([[[0, 255]]], dtype=np.uint8))
    save_idx(tmp_path / "lb", np.array([9], dtype=np.uint8))
    x, y = load_idx_dataset(tmp_path / "im", tmp_path / "lb")
    np.testing.assert_array_equal(x, [[0.0, 1.0]])
    np.testing.assert_array_equal(y, [9])


def test_dataset_count_mismatch(tmp_path):
    _, _, images_path, labels_path = _mnist_like(tmp_path, n_images=5, n_labels=3)
    with pytest.raises(
        ValueError,
        match=r"IDX image and label counts differ: '.*images-idx3-ubyte\.gz' holds 5 images but "
        r"'.*labels-idx1-ubyte\.gz' holds 3 labels",
    ):
        load_idx_dataset(images_path, labels_path)


def test_dataset_swapped_files(tmp_path):
    _, _, images_path, labels_path = _mnist_like(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"IDX images '.*labels-idx1-ubyte\.gz' must be uint8 of shape \(N, rows, cols\), "
        r"got uint8 of shape \(4,\)",
    ):
        load_idx_dataset(labels_path, images_path)


def test_dataset_bad_labels(tmp_path):
    _, _, images_path, _ = _mnist_like(tmp_path)
    save_idx(tmp_path / "float-labels", np.zeros(4, dtype=np.float32))
    with pytest.raises(
        ValueError,
        match=r"IDX labels '.*float-labels' must be integers of shape \(N,\), got float32 of "
        r"shape \(4,\)",
    ):
        load_idx_dataset(images_path, tmp_path / "float-labels")


def test_dataset_missing_file(tmp_path):
    _, _, images_path, _ = _mnist_like(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"IDX file not found: '.*nope-idx1-ubyte'"):
        load_idx_dataset(images_path, tmp_path / "nope-idx1-ubyte")


def test_dataset_bad_flat(tmp_path):
    _, _, images_path, labels_path = _mnist_like(tmp_path)
    with pytest.raises(TypeError, match=r"`flat` must be a bool, got 1"):
        load_idx_dataset(images_path, labels_path, flat=1)
