"""The transfer-learning example, run end to end (shortened), on the embedded MNIST digits, the
8x8 digits and IDX files; the embedded files against their recorded SHA-256; and its errors for
bad input."""

import hashlib
import re

import jax
import numpy as np
import pytest

import fdl
from tests.examples.helpers import load_example

RUNS = {"frozen body", "frozen conv blocks", "full fine-tuning", "from scratch"}
QUICK_DRAWS = 2  # --quick's draws of the labelled images


def _check_run(accuracy, plot, out):
    assert set(accuracy) == RUNS
    # five classes: chance is 0.2; even the short run learns each way
    assert all(a > 0.5 for a in accuracy.values()), accuracy
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert "pretrained on 0-4: test accuracy" in out
    assert out.count("test accuracy on 5-9") == len(RUNS) * QUICK_DRAWS
    for label, mean in accuracy.items():  # the summary line of each run prints the mean returned
        assert f"  {label}: test accuracy {mean:.4f} (sd " in out
    assert out.count(f" of {QUICK_DRAWS} draws") == len(RUNS) - 1  # each run against scratch


@pytest.mark.slow
@pytest.mark.parametrize("data", ["mnist5k", "digits"])
def test_transfer_digits_runs_and_reports_four_accuracies(data, tmp_path, capsys):
    plot = tmp_path / "transfer.png"
    with jax.numpy_dtype_promotion("standard"):  # as users run it (JAX's default promotion)
        accuracy = load_example("transfer_digits").main(["--quick", "--data", data, "--plot", str(plot)])
    _check_run(accuracy, plot, capsys.readouterr().out)


def test_the_embedded_mnist_digits_are_the_recorded_files():
    example = load_example("transfer_digits")
    readme = (example.DATA / "README.md").read_text()
    for path in example.EMBEDDED["mnist5k"]:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"`{path.name}`: `{digest}`" in readme, path.name
    x, y = fdl.data.load_idx_dataset(*example.EMBEDDED["mnist5k"], flat=False)
    assert x.shape == (5000, 28, 28, 1) and np.bincount(y).tolist() == [500] * 10


def _write_idx(tmp_path, labels_kept=range(10), count=None):
    """The embedded training digits as an MNIST-format IDX pair (uint8 intensities, 16 per
    count): those of ``labels_kept``, or, given ``count``, one image of each digit and then the
    next ones in order, ``count`` in all."""
    tmp_path.mkdir(exist_ok=True)
    data = fdl.data.load_digits(flat=False)
    keep = np.flatnonzero(np.isin(data.y_train, list(labels_kept)))
    if count is not None:
        first = [int(np.flatnonzero(data.y_train == c)[0]) for c in range(10)]
        keep = np.sort(first + [i for i in range(len(data.y_train)) if i not in first][: count - 10])
    images = np.minimum(data.x_train[keep, :, :, 0] * 256, 255).astype(np.uint8)  # (N, 8, 8)
    fdl.data.save_idx(tmp_path / "images-idx3-ubyte.gz", images)
    fdl.data.save_idx(tmp_path / "labels-idx1-ubyte.gz", data.y_train[keep].astype(np.uint8))
    return [
        "--images",
        str(tmp_path / "images-idx3-ubyte.gz"),
        "--labels",
        str(tmp_path / "labels-idx1-ubyte.gz"),
    ]


@pytest.mark.slow
def test_transfer_digits_reads_idx_files(tmp_path, capsys):
    plot = tmp_path / "transfer.png"
    with jax.numpy_dtype_promotion("standard"):
        accuracy = load_example("transfer_digits").main(
            ["--quick", "--plot", str(plot), "--test-fraction", "0.3", *_write_idx(tmp_path)]
        )
    _check_run(accuracy, plot, capsys.readouterr().out)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--images", "x-idx3-ubyte"],
            r"give both --images and --labels \(MNIST-format IDX files\), or neither",
        ),
        (
            ["--labels", "y-idx1-ubyte"],
            r"give both --images and --labels \(MNIST-format IDX files\), or neither",
        ),
        (["--shots", "0"], "--shots 0: expected a positive number of labelled images per class"),
        (["--draws", "0"], "--draws 0: expected a positive number of draws"),
        (["--data", "cifar"], r"--data: invalid choice: 'cifar' \(choose from '?mnist5k'?, '?digits'?\)"),
        (["--shots", "1000"], r"--shots 1000: the training images hold only \d+ of digit 5"),
        (["--test-fraction", "0"], r"--test-fraction 0.0: expected a share in \(0, 1\)"),
    ],
)
def test_transfer_digits_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example("transfer_digits").main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_transfer_digits_names_the_bad_idx_input(tmp_path, capsys):
    idx = _write_idx(tmp_path, labels_kept=range(8))  # no 8s or 9s
    example = load_example("transfer_digits")
    cases = [
        (idx, "no images of digit(s) [8, 9]; expected all of 0-9"),
        ([*idx, "--test-fraction", "1.5"], "--test-fraction 1.5: expected a share in (0, 1)"),
        (
            [*_write_idx(tmp_path / "few", count=12), "--test-fraction", "0.5"],
            "--test-fraction 0.5: the test part of the 12 images holds no digit(s) [",
        ),
        (
            [*_write_idx(tmp_path / "few", count=12), "--test-fraction", "0.01"],
            "--test-fraction 0.01: `test_fraction` must leave at least one example in each part, "
            "got 0.01, which leaves the test part of the 12 examples empty",
        ),
        (["--images", str(tmp_path / "missing"), "--labels", idx[3]], "IDX file not found"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit):
            example.main(argv)
        err = capsys.readouterr().err
        assert message in err, err
