"""Data sets, splits and batching: the embedded 8×8 digits, IDX files, held-out test sets, minibatches.

The loaders return NumPy arrays on the host, and :func:`batches` slices on the host too, handing
back the array type it was given; a jitted step moves each batch to the accelerator. Nothing
downloads: :func:`load_digits` reads the copy that ships inside
scikit-learn, and the IDX loaders read files you already have.
"""

from fdl.data.batches import batches, num_batches
from fdl.data.digits import load_digits
from fdl.data.idx import load_idx, load_idx_dataset, save_idx
from fdl.data.split import Split, split_examples

__all__ = [
    "Split",
    "batches",
    "load_digits",
    "load_idx",
    "load_idx_dataset",
    "num_batches",
    "save_idx",
    "split_examples",
]
