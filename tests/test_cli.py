"""The ``fdl`` command line, called in process through ``fdl.cli.main`` (and once as a program)."""

import csv
import importlib.metadata
import io
import re
import subprocess
import sys

import pytest

import fdl
from fdl.cli import main, parse_opt, parse_value
from fdl.compare import Comparison

OK_OPT = "adam:learning_rate=0.01"


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "compare" in out and "usage: fdl" in out
    code, out, _ = run(["compare", "--help"], capsys)
    assert code == 0 and "--opt SPEC" in out and "[fdl:|optax:]NAME" in out and "--threshold" in out


def test_list_shows_problems_and_optimizers(capsys):
    code, out, _ = run(["compare", "--list"], capsys)
    assert code == 0
    assert "problems: rosenbrock, beale" in out and "optax:NAME): sgd" in out
    # what is and isn't twinned, derived from the registry
    fdl_names = set(fdl.optim.optimizer_names("fdl", qualified=False))
    optax_names = fdl.optim.optimizer_names("optax", qualified=False)
    untwinned = [name for name in optax_names if name not in fdl_names]
    twinned_line = f"twinned (in both, compared at every step): {len(optax_names) - len(untwinned)} of "
    assert f"{twinned_line}{len(optax_names)} optax optimizers" in out
    assert f"optax optimizers without an fdl twin: {', '.join(untwinned) or 'none'}\n" in out
    assert "left out of both (and why): noisy_sgd: it draws noise" in out


def test_compare_writes_every_file_and_prints_the_table(tmp_path, capsys):
    out_dir = tmp_path / "results"
    code, out, err = run(
        [
            "compare",
            "--problem",
            "rosenbrock",
            "--opt",
            OK_OPT,
            "--opt",
            "sgd:learning_rate=1e-3,momentum=0.9",
            "--opt",
            "optax:adam:learning_rate=0.01",
            "--steps",
            "60",
            "--threshold",
            "1e-3",
            "--out",
            str(out_dir),
        ],
        capsys,
    )
    assert code == 0, err
    assert out.startswith("| optimizer | spec |") and "steps to loss <= 0.001" in out
    assert "| adam:learning_rate=0.01 | fdl:adam(learning_rate=0.01) |" in out
    expected = {
        "table.md",
        "table.csv",
        "table.json",
        "curves.csv",
        "losses.png",
        "contour.png",
        "divergence.png",
    }
    assert {path.name for path in out_dir.iterdir()} == expected
    for name in sorted(expected):
        assert f"wrote {out_dir / name}" in out
    rows = list(csv.DictReader(io.StringIO((out_dir / "table.csv").read_text())))
    assert [row["optimizer"] for row in rows] == [
        OK_OPT,
        "sgd:learning_rate=1e-3,momentum=0.9",
        "optax:adam:learning_rate=0.01",
    ]
    result = Comparison.from_json((out_dir / "table.json").read_text())
    assert result.steps == 60 and result.threshold == 1e-3
    assert result.runs[OK_OPT].losses.shape == (61,)
    # fdl's and optax's Adam ran as one twin pair: float32 rounding apart at most.
    assert result.runs[OK_OPT].divergence.max() < 1e-5
    assert (out_dir / "table.md").read_text() + "\n" == out.split("wrote")[0]


def test_without_out_nothing_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(
        ["compare", "--problem", "beale", "--opt", OK_OPT, "--steps", "3", "--no-twins"], capsys
    )
    assert code == 0 and "| adam:learning_rate=0.01 |" in out and "—" in out
    assert list(tmp_path.iterdir()) == []


def test_compare_on_minibatches(capsys):
    code, out, err = run(
        [
            "compare",
            "--problem",
            "logistic_digits",
            "--opt",
            "sgd:learning_rate=0.5",
            "--steps",
            "4",
            "--batch-size",
            "64",
        ],
        capsys,
    )
    assert code == 0, err
    assert "| sgd:learning_rate=0.5 | fdl:sgd(learning_rate=0.5) |" in out
    assert "4 steps, seed 0, minibatches of 64." in out


BAD_INPUT = [
    (
        ["compare", "--problem", "rosen", "--opt", OK_OPT],
        r"unknown problem 'rosen'; valid problems: rosenbrock, beale",
    ),
    (
        ["compare", "--problem", "beale", "--opt", "adamm:learning_rate=0.1"],
        r"unknown optimizer 'adamm' \(did you mean 'adam'\?\); valid names",
    ),
    (
        ["compare", "--problem", "beale", "--opt", "adam:lr=0.1"],
        r"fdl:adam has no argument 'lr'; valid arguments: learning_rate, b1",
    ),
    (
        ["compare", "--problem", "beale", "--opt", "adam:learning_rate=-1"],
        r"fdl:adam: `learning_rate` must be a non-negative number.*got -1",
    ),
    (
        ["compare", "--problem", "beale", "--opt", "adam"],
        r"fdl:adam: missing a required argument: 'learning_rate'",
    ),
    (
        ["compare", "--problem", "beale", "--opt", "adam:learning_rate"],
        r"malformed --opt 'adam:learning_rate': expected \[fdl:\|optax:\]NAME.*bad item",
    ),
    (["compare", "--problem", "beale", "--opt", "adam:a=1:b=2"], r"malformed --opt"),
    (["compare", "--problem", "beale", "--opt", "fdl"], r"malformed --opt 'fdl'"),
    (["compare", "--problem", "beale", "--opt", ":adam"], r"malformed --opt ':adam'"),
    (
        ["compare", "--problem", "beale", "--opt", "adam:learning_rate=fast"],
        r"--opt 'adam:learning_rate=fast': learning_rate: value 'fast' is not a number, true/false "
        r"or none",
    ),
    (
        ["compare", "--problem", "beale", "--opt", "adam:learning_rate=1,learning_rate=2"],
        r"sets 'learning_rate' twice",
    ),
    (
        ["compare", "--problem", "beale", "--opt", OK_OPT, "--opt", OK_OPT],
        r"--opt 'adam:learning_rate=0.01' is given twice",
    ),
    (["compare", "--opt", OK_OPT], r"--problem is required; choose one of: rosenbrock"),
    (["compare", "--problem", "beale"], r"give at least one --opt"),
    (
        ["compare", "--problem", "beale", "--opt", OK_OPT, "--steps", "0"],
        r"argument --steps: must be a positive integer, got '0'; see `fdl compare --help`",
    ),
    (
        ["compare", "--problem", "beale", "--opt", OK_OPT, "--steps", "ten"],
        r"argument --steps: must be a positive integer, got 'ten'",
    ),
    (
        ["compare", "--problem", "beale", "--opt", OK_OPT, "--threshold", "nan"],
        r"argument --threshold: must be a finite number, got 'nan'",
    ),
    (
        ["compare", "--problem", "beale", "--opt", OK_OPT, "--batch-size", "8"],
        r"--batch-size needs a problem with data \(logistic_digits, mlp_digits\); beale is a fixed "
        r"function",
    ),
    (
        ["compare", "--problem", "logistic_digits", "--opt", OK_OPT, "--batch-size", "5000"],
        r"--batch-size 5000 exceeds the 1438 examples of logistic_digits",
    ),
    (
        ["compare", "--problem", "logistic_digits", "--opt", OK_OPT, "--batch-size", "0"],
        r"argument --batch-size: must be a positive integer, got '0'",
    ),
    (
        ["compare", "--problem", "beale", "--opt", OK_OPT, "--bogus"],
        r"unrecognized arguments: --bogus; see `fdl --help`",
    ),
    (["fit"], r"argument COMMAND: invalid choice: 'fit'"),
    ([], r"the following arguments are required: COMMAND; see `fdl --help`"),
]


@pytest.mark.parametrize(("argv", "pattern"), BAD_INPUT)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(argv, pattern, tmp_path, capsys):
    out_dir = tmp_path / "results"
    if argv[:1] == ["compare"]:
        argv = [*argv, "--out", str(out_dir)]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert not out_dir.exists()


def test_out_must_not_be_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    code, _, err = run(["compare", "--problem", "beale", "--opt", OK_OPT, "--out", str(target)], capsys)
    assert code == 2 and err.startswith("error: --out") and "is a file, not a directory" in err
    assert target.read_text() == "keep me"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("-2", -2),
        ("1.0", 1.0),
        ("1e-3", 1e-3),
        (".5", 0.5),
        ("TRUE", True),
        ("false", False),
        ("None", None),
        ("null", None),
        ("inf", float("inf")),
    ],
)
def test_parse_value(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sgd", ("sgd", {})),
        ("fdl:sgd:learning_rate=0.1", ("fdl:sgd", {"learning_rate": 0.1})),
        (
            "optax:rmsprop:learning_rate=1e-2,centered=true,momentum=none",
            ("optax:rmsprop", {"learning_rate": 0.01, "centered": True, "momentum": None}),
        ),
        ("lion:learning_rate=3e-4, b2=0.99", ("lion", {"learning_rate": 3e-4, "b2": 0.99})),
    ],
)
def test_parse_opt(text, expected):
    assert parse_opt(text) == expected


@pytest.mark.slow  # fresh processes
def test_console_script_is_declared_and_the_module_runs_as_a_program(tmp_path):
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert [ep.value for ep in scripts if ep.name == "fdl"] == ["fdl.cli:main"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fdl.cli",
            "compare",
            "--problem",
            "quadratic",
            "--opt",
            "sgd:learning_rate=0.01",
            "--steps",
            "5",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| sgd:learning_rate=0.01 | fdl:sgd(learning_rate=0.01) |" in done.stdout
    assert (tmp_path / "o" / "contour.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run(
        [sys.executable, "-m", "fdl.cli", "compare", "--problem", "x"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: unknown problem 'x'") and len(bad.stderr.splitlines()) == 1


# ------------------------------------------------------------------------------------- train


def test_train_help(capsys):
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0
    for flag in (
        "--model",
        "--opt SPEC",
        "--epochs",
        "--batch-size",
        "--seed",
        "--checkpoint-dir",
        "--resume",
        "--images",
        "--labels",
        "--nan-policy",
        "--compute-dtype",
    ):
        assert flag in out, flag


@pytest.mark.slow  # two trainings end to end
def test_train_then_resume_writes_history_plot_and_checkpoints(tmp_path, capsys):
    ckpt, history, plot = tmp_path / "ckpt", tmp_path / "h.csv", tmp_path / "curves.png"
    common = [
        "train",
        "--hidden",
        "32",
        "--opt",
        "adam:learning_rate=1e-2",
        "--no-progress",
        "--checkpoint-dir",
        str(ckpt),
    ]
    code, out, err = run([*common, "--epochs", "2", "--history", str(history), "--plot", str(plot)], capsys)
    assert code == 0, err
    match = re.fullmatch(r"step 88: test accuracy (\S+), test loss \S+, skipped steps 0\n", out)
    assert match and float(match.group(1)) > 0.85, out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(history.open()))
    assert rows[-1]["step"] == "88" and float(rows[-1]["eval_accuracy"]) > 0.85
    assert sorted(p.name for p in ckpt.iterdir()) == ["ckpt-00000044.npz", "ckpt-00000088.npz", "run.json"]
    code, out, err = run([*common, "--epochs", "3", "--resume"], capsys)
    assert code == 0, err
    assert out.startswith("step 132: test accuracy")
    assert "ckpt-00000132.npz" in {p.name for p in ckpt.iterdir()}


@pytest.mark.slow  # a training end to end
def test_train_on_idx_files(tmp_path, capsys):
    import numpy as np

    from fdl.data import save_idx

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120).astype(np.uint8)
    images = (rng.random((120, 8, 8)) * 60).astype(np.uint8)
    images[np.arange(120), labels, :] = 255  # class c lights up row c: learnable
    save_idx(tmp_path / "images.idx", images)
    save_idx(tmp_path / "labels.idx", labels)
    code, out, err = run(
        [
            "train",
            "--images",
            str(tmp_path / "images.idx"),
            "--labels",
            str(tmp_path / "labels.idx"),
            "--model",
            "cnn",
            "--epochs",
            "5",
            "--batch-size",
            "16",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert float(re.search(r"test accuracy (\S+),", out).group(1)) > 0.9


def test_train_resume_into_another_model_exits_2_and_writes_nothing(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert (
        run(
            ["train", "--hidden", "16", "--epochs", "1", "--no-progress", "--checkpoint-dir", str(ckpt)],
            capsys,
        )[0]
        == 0
    )
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    history = tmp_path / "h.jsonl"
    code, out, err = run(
        [
            "train",
            "--hidden",
            "32",
            "--epochs",
            "2",
            "--no-progress",
            "--resume",
            "--checkpoint-dir",
            str(ckpt),
            "--history",
            str(history),
        ],
        capsys,
    )
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.match(
        r"error: --resume: checkpoint .*ckpt-00000044.npz does not match the template; "
        r"\d+ mismatched path\(s\); resume with the --model/--hidden",
        lines[0],
    )
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before and not history.exists()


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--model", "vit"], r"argument --model: invalid choice: 'vit'"),
        (
            ["--images", "nowhere.idx", "--labels", "nowhere2.idx"],
            r"--images 'nowhere.idx': no such file; give an MNIST-format IDX file",
        ),
        (["--images", "nowhere.idx"], r"give both --images and --labels"),
        (["--opt", "adam:learning_rate=-1"], r"--opt: fdl:adam: `learning_rate` must be"),
        (["--opt", "nadam2"], r"--opt: unknown optimizer 'nadam2'"),
        (["--resume"], r"--resume needs --checkpoint-dir"),
        (["--overwrite"], r"--overwrite needs --checkpoint-dir"),
        (["--checkpoint-every", "5"], r"--checkpoint-every needs --checkpoint-dir"),
        (["--history", "h.txt"], r"--history 'h.txt' must end in .jsonl or .csv"),
        (["--plot", "curves.jpg"], r"--plot 'curves.jpg' must end in .png"),
        (["--epochs", "0"], r"argument --epochs: must be a positive integer, got '0'"),
        (["--dropout", "1.5"], r"argument --dropout: must be in \[0, 1\), got '1.5'"),
        (["--nan-policy", "ignore"], r"argument --nan-policy: invalid choice: 'ignore'"),
        (["--batch-size", "5000"], r"--batch-size 5000 exceeds the 1438 training examples"),
        (["cnn"], r"unrecognized arguments: cnn \(a model is chosen with --model cnn\); see `fdl --help`"),
    ],
)
def test_train_bad_input_exits_2_with_one_line(argv, pattern, tmp_path, capsys):
    code, out, err = run(["train", "--no-progress", *argv], capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("argv", [["--model", "cnn"], ["cnn"], ["cnn", "--model", "cnn"]])
def test_summary_prints_the_cnn_parts_with_counts_and_flops(argv, capsys):
    code, out, err = run(["summary", *argv], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["path", "layer", "output", "shape", "params", "dtype"]
    row = next(line for line in lines if line.startswith("body/block_1/conv2d_0 "))
    assert "Conv2D" in row and "(8, 8, 32)" in row and f"{3 * 3 * 1 * 32:,}" in row
    head = next(line for line in lines if line.startswith("head "))
    assert "(10,)" in head and f"{128 * 10 + 10:,}" in head
    assert re.search(r"total parameters: [\d,]+", out) and "FLOPs per example" in out


def test_summary_of_the_mlp_counts_by_hand(capsys):
    code, out, _ = run(["summary", "--hidden", "32", "--classes", "3"], capsys)
    assert code == 0
    assert f"total parameters: {64 * 32 + 32 + 32 * 3 + 3:,}" in out


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--model", "vit"], r"argument --model: invalid choice: 'vit'"),
        (["vit"], r"argument MODEL: invalid choice: 'vit' \(choose from 'mlp', 'cnn'\)"),
        (["cnn", "--model", "mlp"], r"the model is given twice and differs: MODEL 'cnn' and --model 'mlp'"),
        (
            ["--model", "cnn", "--input-shape", "2", "2", "1"],
            r"--input-shape 2 2 1: layer 'body/block_2/max_pool2d_0'",
        ),
        (["--classes", "0"], r"argument --classes: must be a positive integer, got '0'"),
    ],
)
def test_summary_bad_input_exits_2_with_one_line(argv, pattern, capsys):
    code, out, err = run(["summary", *argv], capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.slow  # fresh processes
def test_version_and_python_dash_m(capsys):
    assert fdl.cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fdl {fdl.__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "fdl", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == f"fdl {fdl.__version__}", done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "fdl", "train", "--epochs", "0"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: argument --epochs: must be a positive integer, got '0'; see `fdl train --help`"
    ]
