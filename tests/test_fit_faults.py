"""Faults ``fit`` must survive without a silent wrong result: updates that overflow the
parameters or the optimizer state, output paths in missing directories, labels out of range."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import checkpoint
from fdl.fit import Checkpoint, Execution, Logging, NonFiniteError, fit

QUIET = Logging(progress=False)


def steep_loss(params, state, batch, key):
    """A finite loss with a finite gradient (10 per unit of ``w``) at every finite ``w``."""
    x, _ = batch
    return 10.0 * params["w"] * jnp.mean(x), (state, {})


def steep_run(optimizer, **overrides):
    x = np.ones((8, 1), np.float32)
    kwargs = dict(key=jax.random.key(0), batch_size=4, steps=4, logging=QUIET)
    kwargs.update(overrides)
    return fit(steep_loss, optimizer, {"w": jnp.ones(())}, (x, x), **kwargs)


def test_an_update_that_overflows_the_parameters_is_not_applied_and_is_named():
    # loss 10 and gradient 10 are finite; the update 1 - 1e38 * 10 is -inf
    with pytest.raises(
        NonFiniteError,
        match=r"non-finite parameter 'w' after the update \(the update overflowed\) at step 0 "
        r"\(loss 10\.0\); the update was not applied",
    ) as caught:
        steep_run(fdl.optim.sgd(1e38))
    assert caught.value.step == 0 and caught.value.path == "w"
    assert float(caught.value.result.params["w"]) == 1.0


def test_an_update_that_overflows_the_optimizer_state_is_not_applied_and_is_named():
    # gradient 1e31 is finite, its square in Adam's second moment is not (the parameter stays
    # finite: the update divides by the square root of inf)
    def huge_loss(params, state, batch, key):
        return 1e31 * params["w"] * jnp.mean(batch[0]), (state, {})

    x = np.ones((8, 1), np.float32)
    with pytest.raises(
        NonFiniteError, match=r"non-finite optimizer state '0/nu/w' after the update"
    ) as caught:
        fit(
            huge_loss,
            fdl.optim.adam(0.1),
            {"w": jnp.ones(())},
            (x, x),
            key=jax.random.key(0),
            batch_size=4,
            steps=2,
            logging=QUIET,
        )
    assert caught.value.path == "0/nu/w"
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(caught.value.result.opt_state))


def test_under_skip_an_overflowing_update_is_skipped_and_no_checkpoint_holds_it(tmp_path):
    optimizer = fdl.optim.sgd(1e38)
    result = steep_run(
        optimizer,
        execution=Execution(nan_policy="skip", steps_per_call=1),
        checkpoint=Checkpoint(tmp_path, every=1, keep=10),
    )
    assert result.skipped == 4 and float(result.params["w"]) == 1.0
    steps = checkpoint.all_steps(tmp_path)
    assert steps == [1, 2, 3, 4]
    params = {"w": jnp.ones(())}
    template = {
        "params": params,
        "layer_state": {},
        "opt_state": optimizer.init(params),
        "key": jax.random.key(0),
    }
    for step in steps:
        tree, _ = checkpoint.restore(tmp_path, template, step=step)
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(tree["params"]))


def test_every_output_in_a_missing_directory_is_created_before_training(tmp_path):
    history, plot = tmp_path / "logs" / "h.jsonl", tmp_path / "figs" / "deep" / "c.png"
    ckpt = tmp_path / "runs" / "ckpt"
    result = steep_run(
        fdl.optim.sgd(0.01),
        logging=Logging(history=history, plot=plot, progress=False),
        checkpoint=Checkpoint(ckpt),
    )
    assert history.is_file() and plot.is_file() and checkpoint.latest_step(ckpt) == result.step


@pytest.mark.parametrize("which", ["history", "plot", "dir"])
def test_an_output_that_cannot_be_written_fails_before_any_training(tmp_path, which):
    from tests.unwritable import unwritable_dir

    with unwritable_dir(tmp_path) as locked:
        ckpt = tmp_path / "ckpt"
        paths = {"history": locked / "h.jsonl", "plot": locked / "c.png", "dir": locked / "ckpt"}
        logging = Logging(
            history=paths["history"] if which == "history" else None,
            plot=paths["plot"] if which == "plot" else None,
            progress=False,
        )
        with pytest.raises(ValueError, match=rf"`{which}` '.*read-only/[^']+': cannot write in '.*read-only"):
            steep_run(
                fdl.optim.sgd(0.01),
                logging=logging,
                checkpoint=Checkpoint(paths["dir"] if which == "dir" else ckpt),
            )
        assert not any(ckpt.iterdir()) if ckpt.exists() else True  # nothing trained, nothing saved


def test_an_output_below_a_file_or_on_a_directory_names_the_argument(tmp_path):
    (tmp_path / "taken").write_text("keep me")
    with pytest.raises(
        ValueError, match=r"`history` '.*taken/h.jsonl': '.*taken' is a file, not a directory"
    ):
        steep_run(
            fdl.optim.sgd(0.01), logging=Logging(history=tmp_path / "taken" / "h.jsonl", progress=False)
        )
    (tmp_path / "a.png").mkdir()
    with pytest.raises(ValueError, match=r"`plot` '.*a.png' is a directory; expected the path of a file"):
        steep_run(fdl.optim.sgd(0.01), logging=Logging(plot=tmp_path / "a.png", progress=False))
    assert (tmp_path / "taken").read_text() == "keep me"


def classifier_data(labels):
    model = fdl.nn.MLP((8, 3))
    params, _, _ = model.init(jax.random.key(0), (4,))
    x = np.zeros((len(labels), 4), np.float32)
    return model, params, x, np.asarray(labels)


@pytest.mark.parametrize(
    ("labels", "bad", "at"),
    [([0, 1, 2, -1, 0, 1], -1, 3), ([0, 1, 2, 0, 3, 1], 3, 4)],
)
def test_labels_out_of_range_are_refused_when_fit_gets_them(labels, bad, at):
    model, params, x, y = classifier_data(labels)
    with pytest.raises(
        ValueError,
        match=rf"`data\[1\]` \(the labels\) holds {bad} \(at index {at}\); class labels must be "
        r"integers in \[0, 3\) for a model with 3 outputs",
    ):
        fit(
            fdl.fit.classification_loss(model),
            fdl.optim.sgd(0.1),
            params,
            (x, y),
            key=jax.random.key(0),
            batch_size=2,
            steps=2,
            logging=QUIET,
        )
    with pytest.raises(ValueError, match=rf"`y` of classification_eval holds {bad} \(at index {at}\)"):
        fdl.fit.classification_eval(model, x, y)


def test_float_labels_are_refused_by_the_classification_loss():
    model, params, x, _ = classifier_data([0, 1])
    with pytest.raises(
        TypeError, match=r"`data\[1\]` \(the labels\) must be integer class labels, got dtype float32"
    ):
        fit(
            fdl.fit.classification_loss(model),
            fdl.optim.sgd(0.1),
            params,
            (x, np.zeros(2, np.float32)),
            key=jax.random.key(0),
            batch_size=2,
            steps=1,
            logging=QUIET,
        )


def test_negative_idx_labels_are_refused_when_loaded(tmp_path):
    from fdl.data import load_idx_dataset, save_idx

    save_idx(tmp_path / "i.idx", np.zeros((3, 2, 2), np.uint8))
    save_idx(tmp_path / "l.idx", np.array([1, 0, -4], np.int16))
    with pytest.raises(
        ValueError,
        match=r"IDX labels '.*l.idx' holds -4 \(at index 2\); class labels must be integers 0 or more",
    ):
        load_idx_dataset(tmp_path / "i.idx", tmp_path / "l.idx")
