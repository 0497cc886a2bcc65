"""The multi-host example: two local processes of two CPU devices each train one model."""

import re
import subprocess
import sys

import pytest

from tests.examples.helpers import EXAMPLES, load_example


@pytest.mark.slow
def test_two_processes_train_one_model_and_one_writes_the_checkpoints(tmp_path):
    ckpt = tmp_path / "ckpt"
    command = [sys.executable, str(EXAMPLES / "multihost_digits.py"), "--local", "2", "--steps", "200"]
    run = subprocess.run(
        [*command, "--checkpoint-dir", str(ckpt)], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.findall(r"process (\d) of 2: 2 local devices", run.stdout) == ["0", "1"]
    digests = re.findall(r"parameters digest: (\w+)", run.stdout)
    assert len(digests) == 2 and digests[0] == digests[1]  # the same parameters in both processes
    accuracy = float(re.search(r"4 devices, 200 steps: test accuracy ([\d.]+)", run.stdout).group(1))
    assert accuracy > 0.8
    assert sorted(p.name for p in ckpt.iterdir())[-2:] == ["ckpt-00000200.npz", "run.json"]
    again = subprocess.run(
        [*command, "--checkpoint-dir", str(ckpt)], capture_output=True, text=True, timeout=600
    )
    assert (
        again.returncode == 0 and re.findall(r"parameters digest: (\w+)", again.stdout) == digests
    )  # resumed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num-processes", "2"], "--coordinator host:port is needed with --num-processes > 1"),
        (
            ["--num-processes", "2", "--coordinator", "h:1", "--process-id", "2"],
            r"--process-id must be in \[0, 2\), got 2",
        ),
        (["--local", "0"], "--local must be a number of processes >= 1, got 0"),
    ],
)
def test_bad_launch_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        load_example("multihost_digits").parse_args(argv)
    assert re.search(message, capsys.readouterr().err)
