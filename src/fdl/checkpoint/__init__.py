r"""Checkpoints: save a pytree of training state to one file, atomically, and restore it.

A checkpoint holds any tree of training state (parameters, layer state, optimizer state with
its NamedTuples and int32 counts, PRNG keys, the step, the data position) and a small JSON
metadata dict. The file is a plain NumPy ``.npz`` (a zip of ``.npy`` arrays) that loads with
``numpy.load(path, allow_pickle=False)``; nothing is ever pickled or unpickled::

    directory/ckpt-00001000.npz
        __fdl_checkpoint__   uint8 (n,)     the manifest: UTF-8 JSON, see below
        leaf_0, leaf_1, ...  one array per leaf of the tree, in the tree's flattening order

The manifest records the format and its version, the step, the caller's metadata, and for
every leaf its key path (``params/0/w``, ``opt_state/1/0/mu/0/w``), kind (``array``, ``key``
or ``python``), dtype and shape, and the SHA-256 digest

.. math::

    d = \operatorname{SHA256}\big(J \,\|\, b_0 \,\|\, b_1 \,\|\, \cdots \,\|\, b_{n-1}\big)

where :math:`J` is the canonical JSON of the manifest without ``sha256`` (sorted keys, no
spaces, ASCII) and :math:`b_i` the raw little-endian bytes of stored array ``leaf_i``. So the
digest covers every array's bytes, dtype and shape, and the metadata; :func:`restore` recomputes
it (on top of zip's own CRC-32 per entry).

Leaves that NumPy cannot store natively are stored as bit views and rebuilt on load:

* ml_dtypes floats (``bfloat16``, ``float8_*``, ``int4`` ...) as unsigned integers of the same
  width (``np.savez`` would write ``bfloat16`` as raw ``V2`` bytes and lose the dtype);
* typed PRNG keys (``jax.random.key``) as their ``uint32`` key data, with the implementation's
  name; legacy ``jax.random.PRNGKey`` keys are ordinary ``uint32`` arrays;
* Python ``bool``/``int``/``float`` leaves (the step, the epoch) as 0-d ``bool``/``int64``/
  ``float64`` arrays, restored as Python scalars of the same type.

Writes are atomic (temporary file in the same directory, ``fsync``, ``os.replace``, ``fsync`` of
the directory), so a crash leaves either the old set of checkpoints or the new one, never a
half-written file under a checkpoint's name; older checkpoints are kept (``keep``), and
:func:`restore_latest_valid` resumes from the newest one that reads back intact. The temporary
file of a writer killed mid-write (``.ckpt-XXXXXXXX.npz.<host>.<pid>.<random>.tmp``) is deleted
by the next :func:`save` in the directory once that process is gone from this host; other
hosts' files and live writers' files are never touched.

**Runs.** A directory holds one training run's checkpoints, named by its marker ``run.json``
(:func:`start_run`, :func:`current_run`), and :func:`save` with ``run=`` records the run in
each checkpoint's manifest (an optional ``run`` field; files without it, from before run ids,
read as before). A fresh run refuses a directory that holds checkpoints unless told to
``overwrite`` them; it then writes its marker before deleting them, and
:func:`restore_latest_valid` considers only the marked run's checkpoints, so neither a fresh
run's resume nor an interrupted overwrite can continue a stale run.

**Concurrency.** One writer per directory at a time (one process calling :func:`save`, or
process 0 for all under ``jax.distributed``; a run saving with ``run=``, as ``fit`` does, is
refused at its next save once another run has taken its directory over). Any number of readers, in any
process, may call :func:`restore_latest_valid` (or :func:`restore` on the directory) while it
writes: each gets an intact checkpoint, the newest one at the time of its listing or a newer
one, never a half-written file; a checkpoint pruned between a reader's listing and its read
(``keep``) sends the reader back to a fresh listing, where the newer checkpoint is. Readers
rely on POSIX semantics (an open file stays readable after it is deleted).

**Several processes** (``jax.distributed``): every process calls :func:`save` with the same
tree; arrays split over several processes are gathered (a collective), process 0 alone writes
the file and prunes old ones, and every process returns only once the file is in place, or
raises if process 0 failed. :func:`restore` reads the file on every process (a shared file system,
or a copy on each host) and places each leaf with the template leaf's sharding, which may span
all processes. A checkpoint does not record how many processes wrote it: it restores in any
number of them.

The package reads like the life of a file: :mod:`~fdl.checkpoint.writing` (:func:`save`, the
checkpoints in a directory), :mod:`~fdl.checkpoint.runs` (:func:`start_run`, the run a
directory belongs to), :mod:`~fdl.checkpoint.reading` (:func:`restore`,
:func:`restore_latest_valid`) and :mod:`~fdl.checkpoint.errors`; the format they share (the
manifest, the digest, the encodings, the run marker) is the kernel ``fdl.checkpoint._format``,
the collectives of several processes ``fdl.checkpoint._multiprocess``.
"""

from fdl.checkpoint._format import FORMAT, MANIFEST, VERSION  # noqa: F401 (the format's constants)
from fdl.checkpoint.errors import CheckpointError, CheckpointWarning
from fdl.checkpoint.reading import restore, restore_latest_valid
from fdl.checkpoint.runs import current_run, start_run
from fdl.checkpoint.writing import all_steps, latest_step, save

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "all_steps",
    "current_run",
    "latest_step",
    "restore",
    "restore_latest_valid",
    "save",
    "start_run",
]
