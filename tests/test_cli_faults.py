"""The command line refuses bad arguments and unusable output paths before any work: one
``error:`` line, exit status 2, nothing trained and nothing written. Each refusal runs ``fdl``
as a real program (``python -m fdl``), as a user's shell does; the trainings that must
succeed run in process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fdl.cli import main
from fdl.data import save_idx
from tests.unwritable import unwritable_dir

# Every refusal starts fdl as a fresh process (about 4 s each): the quick tier leaves them to CI.
pytestmark = pytest.mark.slow

OPT = "adam:learning_rate=0.01"


def fdl(*argv: str, cwd: Path) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "fdl", *argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stdout, done.stderr


def assert_usage_error(result: tuple[int, str, str], pattern: str) -> None:
    code, out, err = result
    lines = err.splitlines()
    assert code == 2, err
    assert out == "", out  # nothing ran: no training line, no table
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def train(*argv: str, cwd: Path) -> tuple[int, str, str]:
    return fdl("train", "--hidden", "8", "--epochs", "1", "--no-progress", *argv, cwd=cwd)


def test_a_negative_seed_is_refused_by_train_and_compare(tmp_path):
    assert_usage_error(
        train("--seed", "-1", cwd=tmp_path), r"argument --seed: must be a non-negative integer, got '-1'"
    )
    assert_usage_error(
        fdl("compare", "--problem", "beale", "--opt", OPT, "--seed", "-1", cwd=tmp_path),
        r"argument --seed: must be a non-negative integer, got '-1'",
    )


@pytest.mark.parametrize("fraction", ["0", "1", "-0.2"])
def test_a_test_fraction_outside_the_open_unit_interval_is_refused(tmp_path, fraction):
    assert_usage_error(
        train("--test-fraction", fraction, cwd=tmp_path),
        rf"argument --test-fraction: must be in \(0, 1\), got '{re.escape(fraction)}'",
    )


@pytest.mark.parametrize("flag", ["--history", "--plot", "--checkpoint-dir"])
def test_an_output_below_a_file_is_refused_before_training(tmp_path, flag):
    (tmp_path / "taken").write_text("keep me")
    name = {"--history": "h.jsonl", "--plot": "curves.png", "--checkpoint-dir": "ckpt"}[flag]
    target = tmp_path / "taken" / "deeper" / name
    assert_usage_error(
        train(flag, str(target), cwd=tmp_path),
        rf"^error: {flag} '.*taken/deeper/{name}': '.*taken' is a file, not a directory; choose another path",
    )
    assert (tmp_path / "taken").read_text() == "keep me"


@pytest.mark.parametrize("flag", ["--history", "--plot", "--checkpoint-dir"])
def test_an_unwritable_output_is_refused_before_training(tmp_path, flag):
    name = {"--history": "h.jsonl", "--plot": "curves.png", "--checkpoint-dir": "ckpt"}[flag]
    with unwritable_dir(tmp_path) as locked:
        extra = [] if flag == "--checkpoint-dir" else ["--checkpoint-dir", str(tmp_path / "ckpt")]
        assert_usage_error(
            train(flag, str(locked / name), *extra, cwd=tmp_path),
            rf"^error: {flag} '.*read-only/{name}': cannot write in '.*read-only[^']*' \(.+\); choose a writable path",
        )
        assert list(locked.iterdir()) == []
    if extra:  # the checkpoint directory was prepared, and no training ran to fill it
        assert list((tmp_path / "ckpt").iterdir()) == []


def test_compare_refuses_an_unwritable_out_before_running(tmp_path):
    with unwritable_dir(tmp_path) as locked:
        assert_usage_error(
            fdl(
                "compare", "--problem", "beale", "--opt", OPT, "--out", str(locked / "results"), cwd=tmp_path
            ),
            r"^error: --out '.*read-only/results': cannot write in '.*read-only/results' \(.+\); choose a writable path",
        )


def train_in_process(*argv: str, capsys) -> tuple[int, str, str]:
    """A training that succeeds runs in this process (it shares the worker's compiled programs):
    what the program prints or refuses is checked in subprocesses above."""
    code = main(["train", "--hidden", "8", "--epochs", "1", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_outputs_in_missing_directories_are_created(tmp_path, capsys):
    history, plot = tmp_path / "logs" / "run" / "h.jsonl", tmp_path / "figures" / "curves.png"
    code, out, err = train_in_process("--history", str(history), "--plot", str(plot), capsys=capsys)
    assert code == 0, err
    assert history.is_file() and plot.is_file() and "test accuracy" in out


def idx_files(tmp_path: Path, side: int, labels: np.ndarray) -> list[str]:
    rng = np.random.default_rng(0)
    save_idx(tmp_path / "images.idx", (rng.random((len(labels), side, side)) * 255).astype(np.uint8))
    save_idx(tmp_path / "labels.idx", labels)
    return ["--images", str(tmp_path / "images.idx"), "--labels", str(tmp_path / "labels.idx")]


def test_a_cnn_on_images_too_small_for_it_is_refused_before_training(tmp_path):
    files = idx_files(tmp_path, 2, np.arange(40, dtype=np.uint8) % 3)
    assert_usage_error(
        train("--model", "cnn", *files, cwd=tmp_path),
        r"^error: --model cnn cannot take examples of shape 2x2x1: layer 'body/.*' .*; choose --model mlp or larger images",
    )


def test_negative_idx_labels_are_refused_naming_the_file_and_the_value(tmp_path):
    labels = np.array([0, 1, 2, -1] * 10, dtype=np.int8)
    assert_usage_error(
        train(*idx_files(tmp_path, 8, labels), cwd=tmp_path),
        r"^error: --images/--labels: IDX labels '.*labels.idx' holds -1 \(at index 3\); "
        r"class labels must be integers 0 or more$",
    )


@pytest.mark.parametrize(("fraction", "empty"), [("0.01", "test"), ("0.99", "training")])
def test_a_test_fraction_that_empties_a_part_of_the_idx_files_is_refused(tmp_path, fraction, empty):
    labels = np.arange(20, dtype=np.uint8) % 4  # 0.01 * 20 rounds to 0 images, 0.99 * 20 to all 20
    assert_usage_error(
        train(*idx_files(tmp_path, 8, labels), "--test-fraction", fraction, cwd=tmp_path),
        rf"^error: --test-fraction: must leave at least one example in each part, got {fraction}, "
        rf"which leaves the {empty} part of the 20 examples empty$",
    )


def test_a_test_fraction_that_empties_a_part_of_the_digits_is_refused(tmp_path):
    assert_usage_error(  # 0.001 of each digit's ~180 images rounds to none
        train("--test-fraction", "0.001", cwd=tmp_path),
        r"^error: --test-fraction: must leave at least one example in each part, got 0\.001, "
        r"which leaves the test part of the 1797 examples empty$",
    )


def test_a_fresh_run_into_another_runs_checkpoints_is_refused_unless_overwrite(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    code, _, err = train_in_process("--checkpoint-dir", str(ckpt), capsys=capsys)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    assert_usage_error(
        train("--checkpoint-dir", str(ckpt), cwd=tmp_path),
        r"^error: --checkpoint-dir: checkpoint directory .*ckpt holds 1 checkpoint\(s\) of run '[\w-]+' "
        r"\(steps 44\); a fresh run there would be mixed with them\. Pass --resume to continue that run, "
        r"or --overwrite to delete them and start a new run, or choose another directory",
    )
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before
    assert_usage_error(
        train("--checkpoint-dir", str(ckpt), "--resume", "--overwrite", cwd=tmp_path),
        r"^error: --overwrite deletes another run's checkpoints for a fresh run and --resume continues",
    )
    code, out, err = train_in_process("--checkpoint-dir", str(ckpt), "--overwrite", capsys=capsys)
    assert code == 0 and "test accuracy" in out, err
    assert (ckpt / "run.json").read_bytes() != before["run.json"]
