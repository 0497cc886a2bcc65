"""Checkpoints: bit-exact round trips of whole training states, atomic writes, retention,
integrity checks, template mismatches and the fallback past damaged files."""

import json
import os
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import checkpoint
from fdl.checkpoint import CheckpointError, CheckpointWarning
from fdl.optim.adam import ScaleByAdamState

MODEL = fdl.nn.Serial(fdl.nn.MLP((8, 3)), fdl.nn.BatchNorm())
OPTIMIZER = fdl.optim.chain(fdl.optim.clip_by_global_norm(1.0), fdl.optim.adam(1e-2))
BATCH = 16


def loss_fn(params, layer_state, batch, key):
    del key
    x, y = batch
    out, layer_state = MODEL.apply(params, layer_state, x, train=True)
    return jnp.mean((out - y) ** 2), (layer_state, {})


TRAIN_STEP = fdl.train.make_train_step(loss_fn, OPTIMIZER, donate=False)


def fresh_state(key):
    """A freshly initialized training state, as a resuming script builds its template."""
    model_key, data_key, other_key = jax.random.split(key, 3)
    params, layer_state, _ = MODEL.init(model_key, (5,))
    return {
        "params": params,
        "layer_state": layer_state,
        "opt_state": OPTIMIZER.init(params),
        "key": data_key,  # typed key
        "legacy_key": jax.random.key_data(other_key),  # uint32 (2,), as jax.random.PRNGKey makes
        "step": 0,
        "data": {"epoch": 0, "position": 0},
        "extras": {
            "ema": jax.tree.map(lambda p: p.astype(jnp.bfloat16), params),
            "keys": jax.random.split(other_key, 3),
            "special": np.zeros(4, np.float32),
            "host_f64": np.zeros(2, np.float64),
            "scalar": jnp.zeros([], jnp.float32),
            "lr": 0.0,
            "flag": False,
            "empty": {},
            "nothing": None,
        },
    }


def train(state, batch, steps):
    """``steps`` steps of training; every part of the state changes."""
    state = dict(state)
    for _ in range(steps):
        key, sub = jax.random.split(state["key"])
        current = fdl.train.TrainState(state["params"], state["layer_state"], state["opt_state"], 0)
        new, _ = TRAIN_STEP(current, batch, sub)
        state.update(params=new.params, layer_state=new.layer_state, opt_state=new.opt_state, key=key)
        state["step"] += 1
        state["data"] = {"epoch": state["data"]["epoch"] + 1, "position": BATCH * state["step"]}
    return state


def trained_state(keys, steps=2):
    x = jax.random.normal(next(keys), (BATCH, 5))
    batch = (x, jnp.sin(x[:, :3]))
    state = train(fresh_state(next(keys)), batch, steps)
    extras = dict(state["extras"])
    extras.update(
        ema=jax.tree.map(lambda p: p.astype(jnp.bfloat16), state["params"]),
        special=np.array([np.nan, -0.0, np.inf, 1e-45], np.float32),  # NaN, signed zero, subnormal
        host_f64=np.array([1.0 / 3.0, -(2.0**-1074)], np.float64),
        scalar=jnp.asarray(2.5, jnp.float32),
        lr=0.1,
        flag=True,
    )
    return {**state, "extras": extras}, batch


def assert_bit_identical(actual, expected):
    """Same structure, and every leaf the same type, dtype, shape and bytes."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    pairs = zip(jax.tree_util.tree_flatten_with_path(actual)[0], jax.tree.leaves(expected), strict=True)
    for (path, a), b in pairs:
        where = jax.tree_util.keystr(path)
        assert type(a) is type(b), where
        if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            assert a.dtype == b.dtype, where
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        a, b = np.asarray(a), np.asarray(b)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        assert a.tobytes() == b.tobytes(), where


def entries(path):
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def manifest_of(path):
    return json.loads(entries(path)[checkpoint.MANIFEST].tobytes())


def listing(directory):
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------------------------ round trip


def test_round_trip_of_a_training_state_is_bit_exact(tmp_path, keys):
    state, _ = trained_state(keys)
    metadata = {"lr": 0.1, "widths": [8, 3], "note": "ünïcode", "nested": {"a": None}}
    path = checkpoint.save(tmp_path, 2, state, metadata=metadata)
    assert path == tmp_path / "ckpt-00000002.npz"
    template = fresh_state(next(keys))
    restored, restored_metadata = checkpoint.restore(path, template)
    assert_bit_identical(restored, state)
    assert restored_metadata == metadata
    assert isinstance(restored["opt_state"][1][0], ScaleByAdamState)
    assert restored["opt_state"][1][0].count.dtype == jnp.int32
    assert int(restored["opt_state"][1][0].count) == 2
    assert restored["extras"]["ema"]["serial_0"]["dense_0"]["w"].dtype == jnp.bfloat16
    assert str(restored["key"].dtype) == "key<fry>"
    assert (
        restored["params"]["serial_0"]["dense_0"]["w"].sharding
        == template["params"]["serial_0"]["dense_0"]["w"].sharding
    )


def test_resumed_training_equals_uninterrupted_training(tmp_path, keys):
    state, batch = trained_state(keys, steps=2)
    checkpoint.save(tmp_path, state["step"], state)
    restored, _ = checkpoint.restore(tmp_path, fresh_state(next(keys)))
    assert_bit_identical(train(restored, batch, 2), train(state, batch, 2))


def test_float64_and_int64_under_x64(tmp_path, keys):
    with jax.enable_x64(True):
        state = {
            "w": jax.random.normal(next(keys), (3,), jnp.float64),
            "count": jnp.asarray(2**40, jnp.int64),
        }
        checkpoint.save(tmp_path, 0, state)
        template = {"w": jnp.zeros(3, jnp.float64), "count": jnp.zeros([], jnp.int64)}
        restored, _ = checkpoint.restore(tmp_path, template)
        assert_bit_identical(restored, state)


def test_bfloat16_is_stored_as_a_uint16_view_and_restored_as_bfloat16(tmp_path):
    values = jnp.asarray([1.0, -0.0, 3.140625, 1e-30, jnp.inf], jnp.bfloat16)
    path = checkpoint.save(tmp_path, 0, {"w": values})
    (entry,) = manifest_of(path)["leaves"]
    assert (entry["dtype"], entry["stored_dtype"]) == ("bfloat16", "uint16")
    stored = entries(path)[entry["entry"]]
    assert stored.dtype == np.uint16
    assert stored.tolist() == np.asarray(values).view(np.uint16).tolist()
    restored, _ = checkpoint.restore(path, {"w": jnp.zeros(5, jnp.bfloat16)})
    assert_bit_identical(restored, {"w": values})


def test_typed_keys_of_another_implementation_round_trip(tmp_path, keys):
    seed = int(jax.random.randint(next(keys), (), 0, 2**20))
    state = {"key": jax.random.key(seed, impl="rbg")}
    path = checkpoint.save(tmp_path, 0, state)
    (entry,) = manifest_of(path)["leaves"]
    assert (entry["kind"], entry["impl"], entry["dtype"]) == ("key", "rbg", "key<rbg>")
    restored, _ = checkpoint.restore(path, {"key": jax.random.key(0, impl="rbg")})
    assert_bit_identical(restored, state)


def test_an_abstract_template_from_eval_shape_works(tmp_path, keys):
    state, _ = trained_state(keys)
    checkpoint.save(tmp_path, 2, state)
    template = jax.eval_shape(fresh_state, next(keys))
    template = {**template, "step": 0, "data": {"epoch": 0, "position": 0}}
    template["extras"] = {
        **template["extras"],
        "special": np.zeros(4, np.float32),
        "host_f64": np.zeros(2, np.float64),
        "lr": 0.0,
        "flag": False,
    }
    restored, _ = checkpoint.restore(tmp_path, template)
    assert_bit_identical(restored, state)


def test_compressed_checkpoints_round_trip(tmp_path, keys):
    state, _ = trained_state(keys)
    path = checkpoint.save(tmp_path, 2, state, compress=True)
    restored, _ = checkpoint.restore(path, fresh_state(next(keys)))
    assert_bit_identical(restored, state)


def test_the_file_is_a_plain_npz_that_needs_no_pickle(tmp_path, keys):
    state, _ = trained_state(keys)
    path = checkpoint.save(tmp_path, 2, state, metadata={"run": "a"})
    arrays = entries(path)  # np.load(..., allow_pickle=False) reads every entry
    assert all(a.dtype != object for a in arrays.values())
    manifest = json.loads(arrays.pop(checkpoint.MANIFEST).tobytes())
    assert (manifest["format"], manifest["version"], manifest["step"]) == ("fdl.checkpoint", 1, 2)
    assert manifest["metadata"] == {"run": "a"}
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["sha256"])
    paths = [entry["path"] for entry in manifest["leaves"]]
    assert "params/serial_0/dense_0/w" in paths and "opt_state/1/0/mu/serial_0/dense_1/b" in paths
    assert "data/epoch" in paths
    assert {entry["entry"] for entry in manifest["leaves"]} == set(arrays)


def test_a_tree_that_is_one_array_round_trips(tmp_path, key):
    value = jax.random.normal(key, (2, 2))
    checkpoint.save(tmp_path, 0, value)
    restored, metadata = checkpoint.restore(tmp_path, jnp.zeros((2, 2)))
    assert_bit_identical(restored, value)
    assert metadata == {}


# -------------------------------------------------------------------------- steps and retention


def test_keep_last_n_and_foreign_files_are_left_alone(tmp_path):
    foreign = ["notes.txt", "ckpt-1.npz", "ckpt-000000007.npz", ".ckpt-00000001.npz.1.ab.tmp"]
    for name in foreign:
        (tmp_path / name).write_bytes(b"not mine")
    for step in range(1, 7):
        checkpoint.save(tmp_path, step, {"w": jnp.full(2, float(step))})
    assert checkpoint.all_steps(tmp_path) == [4, 5, 6]
    assert checkpoint.latest_step(tmp_path) == 6
    assert set(foreign) <= set(listing(tmp_path))
    checkpoint.save(tmp_path, 7, {"w": jnp.zeros(2)}, keep=1)
    assert checkpoint.all_steps(tmp_path) == [7]


def test_keep_none_keeps_every_checkpoint(tmp_path):
    for step in range(5):
        checkpoint.save(tmp_path, step, {"w": jnp.zeros(1)}, keep=None)
    assert checkpoint.all_steps(tmp_path) == [0, 1, 2, 3, 4]


def test_keep_never_deletes_the_checkpoint_just_written(tmp_path):
    for step in (10, 20, 30):
        checkpoint.save(tmp_path, step, {"w": jnp.zeros(1)}, keep=3)
    checkpoint.save(tmp_path, 5, {"w": jnp.ones(1)}, keep=3)
    assert checkpoint.all_steps(tmp_path) == [5, 10, 20, 30]


def test_steps_of_a_missing_or_empty_directory(tmp_path):
    assert checkpoint.all_steps(tmp_path / "missing") == []
    assert checkpoint.latest_step(tmp_path) is None


def test_steps_beyond_eight_digits(tmp_path):
    path = checkpoint.save(tmp_path, 123_456_789, {"w": jnp.zeros(1)})
    assert path.name == "ckpt-123456789.npz"
    assert checkpoint.all_steps(tmp_path) == [123_456_789]


def test_restore_from_a_directory_picks_the_newest_or_the_step_asked(tmp_path):
    for step in (3, 10, 7):
        checkpoint.save(tmp_path, step, {"w": jnp.full(2, float(step))}, metadata={"s": step})
    template = {"w": jnp.zeros(2)}
    tree, metadata = checkpoint.restore(tmp_path, template)
    assert tree["w"].tolist() == [10.0, 10.0] and metadata == {"s": 10}
    tree, metadata = checkpoint.restore(tmp_path, template, step=7)
    assert tree["w"].tolist() == [7.0, 7.0] and metadata == {"s": 7}
    with pytest.raises(
        FileNotFoundError,
        match=r"no checkpoint of step 4 in .*steps"
        r" found: \[3, 7, 10\]",
    ):
        checkpoint.restore(tmp_path, template, step=4)


def test_restore_missing_paths_and_step_with_a_file(tmp_path):
    template = {"w": jnp.zeros(2)}
    with pytest.raises(FileNotFoundError, match=r"no checkpoints \(ckpt-XXXXXXXX.npz\) in"):
        checkpoint.restore(tmp_path, template)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint file or directory at .*nowhere"):
        checkpoint.restore(tmp_path / "nowhere", template)
    path = checkpoint.save(tmp_path, 1, template)
    with pytest.raises(ValueError, match=r"`step` selects a checkpoint in a directory, .* step=1"):
        checkpoint.restore(path, template, step=1)


# ------------------------------------------------------------------------------------ atomicity


def test_a_failure_while_serializing_leaves_nothing_behind(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, 1, {"w": jnp.ones(3)})
    before = listing(tmp_path)

    def fail_midway(file, members, compress):
        file.write(b"PK\x03\x04 half a zip")
        raise RuntimeError("disk full")

    monkeypatch.setattr(checkpoint.writing, "_write_members", fail_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        checkpoint.save(tmp_path, 2, {"w": jnp.zeros(3)})
    assert listing(tmp_path) == before == ["ckpt-00000001.npz"]
    tree, _ = checkpoint.restore(tmp_path, {"w": jnp.zeros(3)})
    assert tree["w"].tolist() == [1.0, 1.0, 1.0]


def test_a_failed_rename_leaves_nothing_behind(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, 1, {"w": jnp.ones(3)})

    def fail(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        checkpoint.save(tmp_path, 2, {"w": jnp.zeros(3)})
    monkeypatch.undo()
    assert listing(tmp_path) == ["ckpt-00000001.npz"]
    assert checkpoint.restore(tmp_path, {"w": jnp.zeros(3)})[0]["w"].tolist() == [1.0, 1.0, 1.0]


def test_an_unsupported_leaf_fails_before_any_file_is_created(tmp_path):
    with pytest.raises(TypeError, match=r"cannot checkpoint leaf 'a/name' of type str; supported"):
        checkpoint.save(tmp_path / "run", 0, {"a": {"name": "mlp"}})
    with pytest.raises(TypeError, match=r"cannot checkpoint leaf 'w' of dtype <U1; supported"):
        checkpoint.save(tmp_path / "run", 0, {"w": np.array(["a"])})
    with pytest.raises(ValueError, match=r"leaf 'n': the int 18446744073709551616 does not fit"):
        checkpoint.save(tmp_path / "run", 0, {"n": 2**64})
    donated = jnp.zeros(2)
    donated.delete()  # what a train step with donate_argnums leaves behind
    with pytest.raises(ValueError, match=r"leaf 'params/w': its buffer was deleted \(donated"):
        checkpoint.save(tmp_path / "run", 0, {"params": {"w": donated}})
    assert not (tmp_path / "run").exists()


def test_overwriting_a_step_needs_overwrite_true(tmp_path):
    checkpoint.save(tmp_path, 5, {"w": jnp.ones(2)})
    with pytest.raises(
        FileExistsError,
        match=r"a checkpoint of step 5 already exists at .*ckpt-00000005.npz; pass overwrite=True",
    ):
        checkpoint.save(tmp_path, 5, {"w": jnp.zeros(2)})
    checkpoint.save(tmp_path, 5, {"w": jnp.zeros(2)}, overwrite=True)
    assert checkpoint.restore(tmp_path, {"w": jnp.ones(2)})[0]["w"].tolist() == [0.0, 0.0]
    assert listing(tmp_path) == ["ckpt-00000005.npz"]


# ------------------------------------------------------------------------------------ integrity


@pytest.fixture
def small_checkpoint(tmp_path, keys):
    """A small checkpoint (a few hundred bytes per entry), its tree and a template."""
    tree = {
        "w": jax.random.normal(next(keys), (3,)),
        "key": next(keys),
        "step": 4,
        "half": jnp.asarray([0.5, 2.0], jnp.bfloat16),
    }
    template = {"w": jnp.zeros(3), "key": next(keys), "step": 0, "half": jnp.zeros(2, jnp.bfloat16)}
    return checkpoint.save(tmp_path, 4, tree, metadata={"lr": 0.1}), tree, template


def test_every_truncation_raises_checkpoint_error_naming_the_file(small_checkpoint):
    path, _, template = small_checkpoint
    data = path.read_bytes()
    for length in range(len(data)):
        path.write_bytes(data[:length])
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            checkpoint.restore(path, template)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"is truncated or corrupt: BadZipFile"):
        checkpoint.restore(path, template)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="is not an fdl checkpoint: the file is empty"):
        checkpoint.restore(path, template)


def test_every_flipped_byte_is_caught_or_harmless(small_checkpoint):
    """A flipped byte either raises CheckpointError or lies in a zip field nothing reads (a
    timestamp, an attribute) and the restored tree is still bit-exact; flips in the payload
    (the arrays and the manifest) must all raise."""
    path, tree, template = small_checkpoint
    data = path.read_bytes()
    stored = entries(path)
    payload = set()
    for array in stored.values():
        start = data.find(array.tobytes())
        assert start > 0
        payload.update(range(start, start + array.nbytes))
    caught = 0
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            restored, metadata = checkpoint.restore(path, template)
        except CheckpointError as err:
            assert str(path) in str(err)
            caught += 1
            continue
        assert offset not in payload, offset
        assert_bit_identical(restored, tree)
        assert metadata == {"lr": 0.1}
    assert caught > len(payload)


def test_a_checksum_mismatch_is_reported(small_checkpoint):
    path, _, template = small_checkpoint
    arrays = entries(path)
    leaf = manifest_of(path)["leaves"][0]["entry"]
    arrays[leaf] = arrays[leaf].copy()
    arrays[leaf].reshape(-1).view(np.uint8)[0] ^= 1  # one bit, in an otherwise valid zip
    np.savez(path, **arrays)
    with pytest.raises(
        CheckpointError,
        match=r"is corrupt: SHA-256 checksum mismatch"
        r" \(recorded [0-9a-f]{64}",
    ):
        checkpoint.restore(path, template)


def test_edited_metadata_fails_the_checksum(small_checkpoint):
    path, _, template = small_checkpoint
    arrays = entries(path)
    manifest = json.loads(arrays[checkpoint.MANIFEST].tobytes())
    manifest["metadata"]["lr"] = 0.2
    arrays[checkpoint.MANIFEST] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="SHA-256 checksum mismatch"):
        checkpoint.restore(path, template)


def test_files_that_are_not_checkpoints(tmp_path):
    template = {"w": jnp.zeros(2)}
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(
        CheckpointError,
        match=r"notes.npz is not an fdl checkpoint: it is"
        r" not an .npz \(zip\) file",
    ):
        checkpoint.restore(text, template)
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(2, np.float32))
    with pytest.raises(
        CheckpointError,
        match=r"plain.npz is not an fdl checkpoint: it has no"
        r" '__fdl_checkpoint__' entry \(entries: w\)",
    ):
        checkpoint.restore(plain, template)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, __fdl_checkpoint__=np.frombuffer(b'{"format": "other"}', np.uint8))
    with pytest.raises(
        CheckpointError,
        match=r"foreign\.npz is not an fdl checkpoint: its"
        r" manifest has no format 'fdl\.checkpoint'",
    ):
        checkpoint.restore(foreign, template)
    garbled = tmp_path / "garbled.npz"
    np.savez(garbled, __fdl_checkpoint__=np.frombuffer(b"\xff{", np.uint8))
    with pytest.raises(CheckpointError, match=r"garbled\.npz is corrupt: the manifest is not JSON"):
        checkpoint.restore(garbled, template)
    wrong_type = tmp_path / "wrong_type.npz"
    np.savez(wrong_type, __fdl_checkpoint__=np.zeros(3, np.float32))
    with pytest.raises(
        CheckpointError,
        match=r"wrong_type.npz is corrupt: the manifest is"
        r" float32 \(3,\), not uint8",
    ):
        checkpoint.restore(wrong_type, template)


def test_a_newer_format_version_or_a_malformed_manifest(small_checkpoint):
    path, _, template = small_checkpoint
    arrays = entries(path)
    manifest = json.loads(arrays[checkpoint.MANIFEST].tobytes())
    for change, message in [
        ({"version": 2}, "has checkpoint format version 2; this fdl reads version 1"),
        ({"step": "4"}, "is corrupt: its manifest lacks or mistypes required fields"),
        ({"leaves": [{"path": "w"}]}, "is corrupt: its manifest lacks or mistypes required fields"),
    ]:
        text = json.dumps({**manifest, **change}).encode()
        arrays[checkpoint.MANIFEST] = np.frombuffer(text, np.uint8)
        np.savez(path, **arrays)
        with pytest.raises(CheckpointError, match=re.escape(f"{path} {message}")):
            checkpoint.restore(path, template)


def test_missing_or_extra_entries_are_corruption(small_checkpoint):
    path, _, template = small_checkpoint
    arrays = entries(path)
    np.savez(path, **arrays, extra=np.zeros(1))
    with pytest.raises(
        CheckpointError,
        match=r"is corrupt: entries missing \[\],"
        r" unexpected \['extra'\]",
    ):
        checkpoint.restore(path, template)
    del arrays["leaf_0"]
    np.savez(path, **arrays)
    with pytest.raises(
        CheckpointError,
        match=r"is corrupt: entries missing"
        r" \['leaf_0'\], unexpected \[\]",
    ):
        checkpoint.restore(path, template)


def test_a_stored_array_that_disagrees_with_the_manifest(small_checkpoint):
    path, _, template = small_checkpoint
    arrays = entries(path)
    (leaf,) = [e["entry"] for e in manifest_of(path)["leaves"] if e["path"] == "w"]
    arrays[leaf] = arrays[leaf].astype(np.float64)
    np.savez(path, **arrays)
    message = f"entry {leaf} (w) holds float64 (3,), the manifest says float32 (3,)"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoint.restore(path, template)


def test_a_renamed_checkpoint_is_caught(small_checkpoint):
    path, _, template = small_checkpoint
    renamed = path.with_name("ckpt-00000009.npz")
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(
        CheckpointError,
        match=r"ckpt-00000009.npz records step 4 but"
        r" is named for step 9",
    ):
        checkpoint.restore(renamed, template)
    other = path.with_name("best.npz")  # a name of the caller's choosing is not checked
    other.write_bytes(path.read_bytes())
    assert checkpoint.restore(other, template)[0]["step"] == 4


# ----------------------------------------------------------------------------------- templates


def test_a_mismatched_template_lists_every_path_in_one_error(tmp_path, keys):
    state, _ = trained_state(keys)
    path = checkpoint.save(tmp_path, 2, state)
    template = fresh_state(next(keys))
    adam_state = template["opt_state"][1][0]
    template["opt_state"] = (
        template["opt_state"][0],
        (adam_state._replace(count=jnp.zeros([], jnp.float32)), template["opt_state"][1][1]),
    )
    template["extras"] = dict(template["extras"])
    template["extras"]["new"] = jnp.zeros(2)
    del template["extras"]["flag"]
    template["extras"]["special"] = np.zeros(5, np.float32)
    template["extras"]["lr"] = 0  # a Python int where a Python float was saved
    template["key"] = jax.random.key_data(template["key"])  # legacy where a typed key was saved
    with pytest.raises(
        ValueError,
        match=r"does not match the template; 7"
        r" mismatched path\(s\)",
    ) as info:
        checkpoint.restore(path, template)
    assert not isinstance(info.value, CheckpointError)  # restore_latest_valid must not skip it
    lines = str(info.value).splitlines()[1:]
    assert sorted(line.strip() for line in lines) == sorted(
        [
            "extras/flag: unexpected in the file (file: python bool ())",
            "extras/lr: dtype mismatch: file python float, template python int",
            "extras/new: missing in the file (template: float32 (2,))",
            "extras/special: shape mismatch: file (4,), template (5,)",
            "key: dtype mismatch: file key<fry>, template uint32",
            "key: shape mismatch: file (), template (2,)",
            "opt_state/1/0/count: dtype mismatch: file int32, template float32",
        ]
    )


def test_a_template_with_a_different_structure(tmp_path, keys):
    params = fdl.nn.MLP((4, 2)).init(next(keys), (3,))[0]
    path = checkpoint.save(tmp_path, 0, {"params": params})
    bigger = fdl.nn.MLP((4, 4, 2)).init(next(keys), (3,))[0]
    with pytest.raises(ValueError, match=r"4 mismatched path\(s\)") as info:
        checkpoint.restore(path, {"params": bigger})
    message = str(info.value)
    assert "params/dense_2/b: missing in the file (template: float32 (2,))" in message
    assert "params/dense_1/w: shape mismatch: file (4, 2), template (4, 4)" in message
    assert "params/dense_1/b: shape mismatch: file (2,), template (4,)" in message
    assert "params/dense_2/w: missing in the file (template: float32 (4, 2))" in message


def test_unsupported_template_leaves_and_duplicate_paths(tmp_path):
    path = checkpoint.save(tmp_path, 0, {"w": jnp.zeros(1)})
    with pytest.raises(TypeError, match=r"cannot restore into template leaf 'w' of type str"):
        checkpoint.restore(path, {"w": "zeros"})
    clash = {"a/b": jnp.zeros(1), "a": {"b": jnp.zeros(1)}}
    with pytest.raises(
        ValueError,
        match=r"two leaves of `tree` have the key path"
        r" 'a/b'; paths must be unique",
    ):
        checkpoint.save(tmp_path, 1, clash)
    with pytest.raises(ValueError, match=r"two leaves of `template` have the key path 'a/b'"):
        checkpoint.restore(path, clash)


# ------------------------------------------------------------------------------------ fallback


def test_fallback_skips_a_damaged_newest_checkpoint(tmp_path):
    template = {"w": jnp.zeros(2), "step": 0}
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, {"w": jnp.full(2, float(step)), "step": step})
    newest = tmp_path / "ckpt-00000003.npz"
    newest.write_bytes(newest.read_bytes()[:100])  # as if the disk lost its tail
    with pytest.raises(CheckpointError, match=r"ckpt-00000003\.npz is truncated or corrupt"):
        checkpoint.restore(tmp_path, template)
    with pytest.warns(
        CheckpointWarning,
        match=r"skipping unreadable checkpoint:"
        r" .*ckpt-00000003.npz is truncated",
    ):
        tree, metadata, step = checkpoint.restore_latest_valid(tmp_path, template)
    assert step == 2 and tree == {"w": tree["w"], "step": 2} and tree["w"].tolist() == [2.0, 2.0]
    assert metadata == {}


def test_fallback_when_every_checkpoint_is_damaged_or_none_exists(tmp_path):
    template = {"w": jnp.zeros(2)}
    with pytest.raises(FileNotFoundError, match=r"no checkpoints \(ckpt-XXXXXXXX.npz\) in"):
        checkpoint.restore_latest_valid(tmp_path, template)
    for step in (1, 2):
        checkpoint.save(tmp_path, step, template)
        (tmp_path / f"ckpt-{step:08d}.npz").write_text("garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(
            CheckpointError,
            match=r"no readable checkpoint in .*; tried"
            r" 2:\n.*ckpt-00000002.npz.*\n.*ckpt-00000001.npz",
        ):
            checkpoint.restore_latest_valid(tmp_path, template)
    assert [w.category for w in caught] == [CheckpointWarning, CheckpointWarning]


def test_fallback_does_not_skip_a_template_mismatch(tmp_path):
    checkpoint.save(tmp_path, 1, {"w": jnp.zeros(2)})
    checkpoint.save(tmp_path, 2, {"w": jnp.zeros(3)})
    with pytest.raises(
        ValueError,
        match=r"ckpt-00000002.npz does not match the"
        r" template; 1 mismatched",
    ):
        checkpoint.restore_latest_valid(tmp_path, {"w": jnp.zeros(2)})


# ---------------------------------------------------------------------------- invalid arguments


@pytest.mark.parametrize(
    "step, error, message",
    [
        (-1, ValueError, "`step` must be a non-negative integer, got -1"),
        (1.5, TypeError, "`step` must be a non-negative integer, got 1.5"),
        (True, TypeError, "`step` must be a non-negative integer, got True"),
        ("3", TypeError, "`step` must be a non-negative integer, got '3'"),
    ],
)
def test_invalid_step(tmp_path, step, error, message):
    with pytest.raises(error, match=re.escape(message)):
        checkpoint.save(tmp_path, step, {"w": jnp.zeros(1)})
    checkpoint.save(tmp_path, 0, {"w": jnp.zeros(1)}, overwrite=True)
    with pytest.raises(error, match=re.escape(message)):
        checkpoint.restore(tmp_path, {"w": jnp.zeros(1)}, step=step)


def test_numpy_and_jax_integer_steps_are_accepted(tmp_path):
    assert checkpoint.save(tmp_path, np.int64(3), {"w": jnp.zeros(1)}).name == "ckpt-00000003.npz"
    path = checkpoint.save(tmp_path, jnp.asarray(4, jnp.int32), {"w": jnp.zeros(1)})
    assert path.name == "ckpt-00000004.npz"


@pytest.mark.parametrize(
    "keep, error",
    [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)],
)
def test_invalid_keep(tmp_path, keep, error):
    message = f"`keep` must be a positive integer or None (keep all), got {keep!r}"
    with pytest.raises(error, match=re.escape(message)):
        checkpoint.save(tmp_path, 0, {"w": jnp.zeros(1)}, keep=keep)
    assert listing(tmp_path) == []


def test_invalid_metadata(tmp_path):
    tree = {"w": jnp.zeros(1)}
    with pytest.raises(TypeError, match=r"`metadata` must be a dict \(or None\), got list"):
        checkpoint.save(tmp_path, 0, tree, metadata=[1, 2])
    with pytest.raises(ValueError, match=r"`metadata` must be strict JSON .*not JSON serializable"):
        checkpoint.save(tmp_path, 0, tree, metadata={"array": np.zeros(2)})
    with pytest.raises(ValueError, match=r"`metadata` must be strict JSON .*Out of range float"):
        checkpoint.save(tmp_path, 0, tree, metadata={"loss": float("nan")})
    assert listing(tmp_path) == []


def test_metadata_comes_back_as_json_reads_it(tmp_path):
    checkpoint.save(tmp_path, 0, {"w": jnp.zeros(1)}, metadata={"shape": (2, 3), 7: "seven"})
    assert checkpoint.restore(tmp_path, {"w": jnp.zeros(1)})[1] == {"shape": [2, 3], "7": "seven"}


def test_the_directory_is_created(tmp_path):
    path = checkpoint.save(tmp_path / "a" / "b", 0, {"w": jnp.zeros(1)})
    assert path.is_file() and os.path.dirname(path) == str(tmp_path / "a" / "b")
