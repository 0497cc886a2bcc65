"""Read and write IDX files, the format of MNIST and its relatives (Fashion-MNIST, EMNIST, KMNIST).

An IDX file is a header followed by the array's elements, all big-endian (most significant byte
first)::

    offset  size  content
    0       2     0x00 0x00 (the magic: two zero bytes)
    2       1     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                  0x0D float32, 0x0E float64
    3       1     number of dimensions, ndim
    4       4·ndim  each dimension's size as a big-endian uint32, outermost first
    4+4·ndim  ...   the elements in row-major (C) order, big-endian

MNIST's ``train-images-idx3-ubyte`` is ``(60000, 28, 28)`` of uint8 and ``train-labels-idx1-ubyte``
is ``(60000,)`` of uint8; the files are usually distributed gzip-compressed (``.gz``). This module
reads both forms, telling them apart by gzip's magic bytes ``1f 8b`` rather than by the file name,
and parses the bytes itself with :func:`numpy.frombuffer`: nothing is unpickled or executed.

Nothing here downloads: pass paths to files you already have.

References:
    Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits",
    http://yann.lecun.com/exdb/mnist/ (the section "File formats for the MNIST database").
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from fdl._checks import check_labels

__all__ = ["load_idx", "load_idx_dataset", "save_idx"]

PathLike = str | os.PathLike[str]

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_NDIM = 255  # the number of dimensions is stored in one byte
_MAX_DIM = 2**32 - 1  # each dimension is a uint32
_PIXEL_MAX = 255  # MNIST-style images are uint8 intensities

# Type code -> dtype of the stored (big-endian) elements.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# dtype name (byte-order free, e.g. "int16") -> type code.
_CODES: dict[str, int] = {dtype.name: code for code, dtype in _DTYPES.items()}
_VALID_CODES = ", ".join(f"0x{code:02X} ({dtype.name})" for code, dtype in _DTYPES.items())
_VALID_DTYPES = ", ".join(_CODES)


def _read_bytes(path: PathLike) -> bytes:
    """Return the file's bytes, gunzipped if they start with gzip's magic."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(
            f"IDX file not found: '{os.fspath(path)}' (pass the path to an MNIST-format file such "
            "as train-images-idx3-ubyte[.gz])"
        )
    if file.is_dir():
        raise IsADirectoryError(
            f"IDX path is a directory, not a file: '{os.fspath(path)}' (pass the path to an "
            "MNIST-format file such as train-images-idx3-ubyte[.gz])"
        )
    raw = file.read_bytes()
    if raw[: len(_GZIP_MAGIC)] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise ValueError(
            f"corrupt gzip stream in IDX file '{os.fspath(path)}': {err} (the file starts with "
            "gzip's magic bytes 1f 8b but does not decompress; download it again)"
        ) from err


def _parse(data: bytes, where: str) -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file into a native-endian array."""
    if len(data) < 4:
        raise ValueError(
            f"truncated IDX header in '{where}': expected at least 4 bytes (0x00 0x00, a type "
            f"code, the number of dimensions), found {len(data)}"
        )
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"not an IDX file: '{where}' starts with bytes 0x{data[0]:02X} 0x{data[1]:02X}, "
            "expected the magic 0x00 0x00 followed by a type code and the number of dimensions"
        )
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        raise ValueError(f"unknown IDX type code 0x{code:02X} in '{where}'; valid codes: {_VALID_CODES}")
    if ndim == 0:
        raise ValueError(f"IDX file '{where}' declares 0 dimensions, expected at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"truncated IDX header in '{where}': expected {header_size} bytes for {ndim} "
            f"dimensions, found {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[code]
    size = math.prod(shape)
    expected = size * dtype.itemsize
    found = len(data) - header_size
    what = f"expected {expected} bytes of data for shape {shape} of {dtype.name}, found {found}"
    if found < expected:
        raise ValueError(f"truncated IDX data in '{where}': {what}")
    if found > expected:
        raise ValueError(
            f"unexpected trailing data in IDX file '{where}': {what} ({found - expected} extra bytes)"
        )
    native = dtype.newbyteorder("=")
    if size == 0:
        return np.zeros(shape, dtype=native)
    stored = np.frombuffer(data, dtype=dtype, count=size, offset=header_size)  # (prod(shape),)
    return stored.astype(native).reshape(shape)  # a writable native-endian copy, (*shape)


def load_idx(path: PathLike) -> np.ndarray:
    """Load an IDX file (raw or gzip-compressed) as a NumPy array.

    The header fixes the dtype and the shape; gzip is detected by the magic bytes ``1f 8b``, so
    the file name does not matter. The bytes are checked against the header before anything is
    returned: a file that is too short or too long is an error, not a silently reshaped array.

    Args:
        path: path of the file, e.g. ``"train-images-idx3-ubyte.gz"``.

    Returns:
        An array of the stored shape, ``(d_0, ..., d_{ndim-1})``, with the stored dtype (one of
        uint8, int8, int16, int32, float32, float64) in native byte order. It owns its memory
        and is writable.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        IsADirectoryError: if ``path`` is a directory.
        ValueError: if the gzip stream is corrupt, the magic is not ``0x00 0x00``, the type code
            is unknown, the header or the data is truncated, or data follows the last element.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> from fdl.data import load_idx
        >>> header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = os.path.join(tmp, "tiny-idx2-ubyte")
        ...     with open(path, "wb") as f:
        ...         _ = f.write(header + bytes([0, 1, 2, 253, 254, 255]))
        ...     array = load_idx(path)
        >>> array
        array([[  0,   1,   2],
               [253, 254, 255]], dtype=uint8)

    References:
        Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits",
        http://yann.lecun.com/exdb/mnist/
    """
    return _parse(_read_bytes(path), os.fspath(path))


def save_idx(path: PathLike, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` as an IDX file, gzip-compressed if the name ends in ``.gz``.

    The inverse of :func:`load_idx`: elements are written big-endian in row-major order. The
    gzip header's timestamp is fixed to 0, so the same array always gives the same bytes.

    Args:
        path: destination file; a name ending in ``.gz`` selects gzip compression.
        array: array (NumPy, JAX or anything :func:`numpy.asarray` accepts) of dtype uint8, int8,
            int16, int32, float32 or float64, with 1 to 255 dimensions, each below 2**32.

    Raises:
        ValueError: if the dtype, the number of dimensions or a dimension cannot be stored.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> from fdl.data import load_idx, save_idx
        >>> x = np.array([[-1.5, 0.0], [2.25, 1e30]], dtype=np.float32)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = os.path.join(tmp, "x-idx2-float.gz")
        ...     save_idx(path, x)
        ...     y = load_idx(path)
        >>> y.dtype, bool((x == y).all())
        (dtype('float32'), True)
    """
    values = np.asarray(array)
    code = _CODES.get(values.dtype.name)
    if code is None:
        raise ValueError(
            f"`array` has dtype {values.dtype}, which IDX cannot store; supported dtypes: "
            f"{_VALID_DTYPES} (cast first, e.g. `array.astype(np.int32)`)"
        )
    if not 1 <= values.ndim <= _MAX_NDIM:
        raise ValueError(
            f"`array` must have 1 to {_MAX_NDIM} dimensions to be stored as IDX, got "
            f"{values.ndim} (shape {values.shape})"
        )
    if any(d > _MAX_DIM for d in values.shape):
        raise ValueError(
            f"`array` dimensions must each be below 2**32 to be stored as IDX, got shape {values.shape}"
        )
    header = bytes([0, 0, code, values.ndim]) + b"".join(d.to_bytes(4, "big") for d in values.shape)
    payload = header + values.astype(_DTYPES[code]).tobytes(order="C")
    if Path(path).name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    Path(path).write_bytes(payload)


def load_idx_dataset(
    images_path: PathLike, labels_path: PathLike, *, flat: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    r"""Load an MNIST-style pair of IDX files as float images in [0, 1] and int32 labels.

    The images file must hold uint8 intensities of shape ``(N, rows, cols)`` and the labels file
    integers of shape ``(N,)``; the intensities are scaled as

    .. math::

        x = \mathrm{pixel} / 255.

    Args:
        images_path: path of the images file, e.g. ``"train-images-idx3-ubyte.gz"``.
        labels_path: path of the labels file, e.g. ``"train-labels-idx1-ubyte.gz"``.
        flat: if True, each image is flattened row-major to ``rows * cols`` values; if False it
            keeps its layout as ``(rows, cols, 1)``, NHWC with one channel, for convolutions.

    Returns:
        ``(x, y)``: ``x`` float32 of shape ``(N, rows * cols)`` (or ``(N, rows, cols, 1)``) with
        values in [0, 1], ``y`` int32 of shape ``(N,)``.

    Raises:
        FileNotFoundError: if either file does not exist.
        ValueError: if either file is not valid IDX (see :func:`load_idx`), the images are not
            uint8 of shape ``(N, rows, cols)``, the labels are not integers of shape ``(N,)`` or
            hold a negative label (naming the file, the value and its index), or
            the two files hold different numbers of examples.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> from fdl.data import load_idx_dataset, save_idx
        >>> images = np.zeros((2, 3, 4), dtype=np.uint8)  # (N, rows, cols)
        >>> images[1] = 255
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_idx(os.path.join(tmp, "images-idx3-ubyte"), images)
        ...     save_idx(os.path.join(tmp, "labels-idx1-ubyte"), np.array([7, 1], dtype=np.uint8))
        ...     x, y = load_idx_dataset(
        ...         os.path.join(tmp, "images-idx3-ubyte"), os.path.join(tmp, "labels-idx1-ubyte")
        ...     )
        >>> x.shape, x.dtype, y, float(x[0].max()), float(x[1].min())
        ((2, 12), dtype('float32'), array([7, 1], dtype=int32), 0.0, 1.0)

    References:
        Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits",
        http://yann.lecun.com/exdb/mnist/
    """
    if not isinstance(flat, bool):
        raise TypeError(f"`flat` must be a bool, got {flat!r}")
    images = load_idx(images_path)
    labels = load_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"IDX images '{os.fspath(images_path)}' must be uint8 of shape (N, rows, cols), got "
            f"{images.dtype} of shape {images.shape}"
        )
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise ValueError(
            f"IDX labels '{os.fspath(labels_path)}' must be integers of shape (N,), got "
            f"{labels.dtype} of shape {labels.shape}"
        )
    check_labels(f"IDX labels '{os.fspath(labels_path)}'", labels)
    if len(images) != len(labels):
        raise ValueError(
            f"IDX image and label counts differ: '{os.fspath(images_path)}' holds {len(images)} "
            f"images but '{os.fspath(labels_path)}' holds {len(labels)} labels (pass matching "
            "files, e.g. train-images with train-labels)"
        )
    n, rows, cols = images.shape
    x = images.astype(np.float32) / np.float32(_PIXEL_MAX)  # (N, rows, cols) in [0, 1]
    x = x.reshape(n, rows * cols) if flat else x[..., None]  # (N, rows*cols) or (N, rows, cols, 1)
    y = labels.astype(np.int32)  # (N,); every IDX integer type fits in int32
    return x, y
