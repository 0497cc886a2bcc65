"""fdl._io.atomic_write: the one atomic, durable write used by checkpoints, histories and plots."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest

from fdl import _io


def listing(directory):
    return sorted(p.name for p in directory.iterdir())


def test_writes_bytes_str_and_a_streaming_function(tmp_path):
    assert _io.atomic_write(tmp_path / "a.bin", b"\x00\x01") == tmp_path / "a.bin"
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    _io.atomic_write(str(tmp_path / "b.txt"), "héllo")
    assert (tmp_path / "b.txt").read_text("utf-8") == "héllo"
    _io.atomic_write(tmp_path / "c.bin", lambda f: f.write(b"streamed"))
    assert (tmp_path / "c.bin").read_bytes() == b"streamed"
    assert listing(tmp_path) == ["a.bin", "b.txt", "c.bin"]


def test_replaces_an_existing_file(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text("old\n")
    _io.atomic_write(path, "new\n")
    assert path.read_text() == "new\n"
    assert listing(tmp_path) == ["history.jsonl"]


def test_a_failing_write_leaves_the_old_file_intact_and_no_temp_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text('{"old": true}')

    def fail_midway(file):
        file.write(b'{"new": ')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _io.atomic_write(path, fail_midway)
    assert path.read_text() == '{"old": true}'
    assert listing(tmp_path) == ["report.json"]


def test_a_failed_rename_leaves_the_old_file_intact_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old png")

    def fail(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(_io.os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        _io.atomic_write(path, b"new png")
    monkeypatch.undo()
    assert path.read_bytes() == b"old png"
    assert listing(tmp_path) == ["plot.png"]


def test_an_interrupt_also_cleans_up(tmp_path):
    def interrupted(file):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write(tmp_path / "x", interrupted)
    assert listing(tmp_path) == []


def test_fsyncs_the_file_and_the_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(_io.os, "fsync", spy)
    _io.atomic_write(tmp_path / "f", b"x")
    assert synced == [False, True]  # the file, then its directory


def test_the_file_gets_the_usual_permissions_not_0600(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    _io.atomic_write(tmp_path / "f", b"x")
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o666 & ~umask


def test_a_missing_directory_raises_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        _io.atomic_write(tmp_path / "missing" / "f", b"x")
    assert listing(tmp_path) == []


def test_bad_data_is_rejected_before_anything_is_written(tmp_path):
    with pytest.raises(
        TypeError,
        match=r"^`data` must be bytes, a str or a function that writes to a binary file, got int$",
    ):
        _io.atomic_write(tmp_path / "f", 3)
    assert listing(tmp_path) == []


def test_non_finite_numbers_are_spelled_as_strings_and_read_back():
    row = {"step": 3, "loss": float("nan"), "a": np.float32("inf"), "b": -math.inf, "c": 0.5, "note": "x"}
    encoded = _io.encode_non_finite(row)
    assert encoded == {"step": 3, "loss": "nan", "a": "inf", "b": "-inf", "c": 0.5, "note": "x"}
    decoded = _io.decode_non_finite(json.loads(json.dumps(encoded, allow_nan=False)))
    assert math.isnan(decoded.pop("loss"))
    assert decoded == {"step": 3, "a": math.inf, "b": -math.inf, "c": 0.5, "note": "x"}
