"""A training run for ``test_fit.py`` to start, kill and resume in a subprocess.

    python tests/fit_worker.py CHECKPOINT_DIR OUT.npz [--resume]

Trains a small MLP on the digits with ``fdl.fit.fit`` (checkpoints every 10 steps) and writes
the final parameters to ``OUT.npz``. Not a test module (no ``test_`` prefix); everything runs
under ``main()``.
"""

from __future__ import annotations

import sys

STEPS = 2000


def main(argv: list[str]) -> None:
    import jax
    import numpy as np

    import fdl

    checkpoint_dir, out = argv[0], argv[1]
    data = fdl.data.load_digits(seed=0)
    model = fdl.nn.MLP((32, 10), dropout_rate=0.1)
    params, state, _ = model.init(jax.random.key(0), (64,))
    result = fdl.fit.fit(
        fdl.fit.classification_loss(model),
        fdl.optim.adam(1e-3),
        params,
        (data.x_train, data.y_train),
        layer_state=state,
        key=jax.random.key(1),
        batch_size=32,
        steps=STEPS,
        execution=fdl.fit.Execution(steps_per_call=5),
        checkpoint=fdl.fit.Checkpoint(checkpoint_dir, every=10, resume="--resume" in argv),
        logging=fdl.fit.Logging(progress=False),
    )
    leaves = jax.tree.leaves(result.params)
    np.savez(out, *[np.asarray(leaf) for leaf in leaves], step=result.step)


if __name__ == "__main__":
    main(sys.argv[1:])
