"""A training run for ``test_fit_checkpoint_faults.py`` to kill at random moments and resume.

    python tests/fit_kill_worker.py CHECKPOINT_DIR HISTORY.jsonl OUT.npz [--resume]

Trains a tanh MLP (which carries a NaN input through to the loss) large enough that writing a
checkpoint takes a while (3.6 MB with Adam's moments) on a synthetic 10-class problem with
``fdl.fit.fit``, evaluating on a held-out set with one NaN example (so every evaluation loss is
NaN), checkpointing every 20 steps (keeping 2), writing the history to ``HISTORY.jsonl``.
Prints ``ready`` just before ``fit``, then writes the final parameters and optimizer state (one
array per key path), the step and the history (``repr`` of each row's sorted items) to
``OUT.npz``. Not a test module (no ``test_`` prefix); everything runs under ``main()``.
"""

from __future__ import annotations

import sys

STEPS = 400


def main(argv: list[str]) -> None:
    import jax
    import numpy as np

    import fdl

    checkpoint_dir, history, out = argv[:3]
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(64, 10)).astype(np.float32)
    x = rng.normal(size=(1280, 64)).astype(np.float32)
    y = np.argmax(x @ teacher, axis=1).astype(np.int32)
    x_train, y_train, x_test, y_test = x[:1024], y[:1024], x[1024:].copy(), y[1024:]
    x_test[0, 0] = np.nan  # one NaN in the held-out set: every evaluation loss is NaN
    model = fdl.nn.MLP((512, 512, 10), activation=fdl.activations.tanh, dropout_rate=0.1)
    params, state, _ = model.init(jax.random.key(0), (64,))
    print("ready", flush=True)
    result = fdl.fit.fit(
        fdl.fit.classification_loss(model),
        fdl.optim.adam(1e-3),
        params,
        (x_train, y_train),
        layer_state=state,
        key=jax.random.key(1),
        batch_size=32,
        steps=STEPS,
        evaluate=fdl.fit.Eval(fdl.fit.classification_eval(model, x_test, y_test), every=20),
        execution=fdl.fit.Execution(steps_per_call=5),
        checkpoint=fdl.fit.Checkpoint(checkpoint_dir, every=20, keep=2, resume="--resume" in argv),
        logging=fdl.fit.Logging(history=history, progress=False),
    )
    leaves = jax.tree_util.tree_flatten_with_path({"params": result.params, "opt_state": result.opt_state})[0]
    arrays = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}
    rows = repr([sorted(row.items()) for row in result.history])
    np.savez(out, **arrays, step=result.step, history=rows)


if __name__ == "__main__":
    main(sys.argv[1:])
