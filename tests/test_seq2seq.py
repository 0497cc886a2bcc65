"""Teacher forcing, greedy decoding and the cached transformer step (fdl.seq2seq) against
references: hand-computed values, optax, the decoder block's own ``apply``, and re-running the
whole decoder on the prefix."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import fdl
from fdl import seq2seq

VOCAB, START = 9, 1


def _transformer(layers=2):
    return seq2seq.transformer_encoder_decoder(VOCAB, 16, num_heads=4, mlp_features=32, num_layers=layers)


def _lstm():
    return seq2seq.lstm_encoder_decoder(VOCAB, 8, 16)


MODELS = {"lstm": _lstm, "transformer": _transformer}


def _source(key, batch=5, width=7):
    """Random ids in [3, VOCAB) with ragged lengths 1..width, right-padded with 0."""
    k_ids, k_len = jax.random.split(key)
    ids = jax.random.randint(k_ids, (batch, width), 3, VOCAB)
    lengths = jax.random.randint(k_len, (batch, 1), 1, width + 1)  # (B, 1)
    mask = jnp.arange(width)[None, :] < lengths  # (B, W)
    return jnp.where(mask, ids, 0).astype(jnp.int32), mask


# ------------------------------------------------------------------------ teacher forcing


def test_shift_right_puts_the_start_token_first():
    targets = jnp.array([[5, 6, 7, 2], [4, 2, 0, 0]], jnp.int32)
    np.testing.assert_array_equal(seq2seq.shift_right(targets, 1), [[1, 5, 6, 7], [1, 4, 2, 0]])


def test_sequence_cross_entropy_is_the_mean_over_real_tokens(keys):
    logits = jax.random.normal(next(keys), (3, 4, 6))
    targets = jax.random.randint(next(keys), (3, 4), 0, 6)
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
    nll = optax.losses.softmax_cross_entropy_with_integer_labels(logits, targets)  # reference
    real = [nll[b, t] for b in range(3) for t in range(4) if mask[b, t]]
    expected = sum(float(v) for v in real) / len(real)  # 7 real tokens
    assert float(seq2seq.sequence_cross_entropy(logits, targets, mask)) == pytest.approx(expected, rel=1e-6)


def test_sequence_cross_entropy_of_no_real_token_is_zero_not_nan():
    loss = seq2seq.sequence_cross_entropy(
        jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 3), bool)
    )
    assert float(loss) == 0.0


@pytest.mark.slow  # float64 finite differences / one decoder call per prefix: heavy, run in CI
def test_sequence_cross_entropy_gradient_matches_finite_differences(keys):
    targets = jax.random.randint(next(keys), (2, 3), 0, 5)
    mask = jnp.array([[1, 1, 0], [1, 0, 0]], bool)
    logits = jax.random.normal(next(keys), (2, 3, 5))
    with jax.enable_x64(True):
        check_grads(
            lambda z: seq2seq.sequence_cross_entropy(z, targets, mask),
            (logits.astype(jnp.float64),),
            order=1,
            modes=("fwd", "rev"),
        )
    grad = jax.grad(seq2seq.sequence_cross_entropy)(logits, targets, mask)
    assert float(jnp.abs(grad[0, 2]).max()) == 0.0  # padded positions get no gradient


def test_exact_match_needs_every_real_token_and_ignores_padding():
    targets = jnp.array([[4, 5, 2, 0], [4, 5, 2, 0], [4, 5, 2, 0], [4, 2, 0, 0]], jnp.int32)
    mask = targets > 0
    predicted = jnp.array(
        [
            [4, 5, 2, 7, 8],  # right, then anything after the end: a match
            [4, 5, 5, 2, 0],  # ends late
            [4, 2, 0, 0, 0],  # ends early
            [4, 2, 3, 3, 3],  # right
        ],
        jnp.int32,
    )
    np.testing.assert_array_equal(seq2seq.exact_match(predicted, targets, mask), [True, False, False, True])


@pytest.mark.slow  # one decoder call per prefix (cached = one teacher-forced pass stays quick)
def test_teacher_forcing_loss_reads_the_shifted_reference(keys):
    model = _transformer(layers=1)
    params = model.init(next(keys))
    source, source_mask = _source(next(keys), batch=3)
    targets = jax.random.randint(next(keys), (3, 4), 3, VOCAB).astype(jnp.int32)
    target_mask = jnp.arange(4)[None, :] < jnp.array([[4], [2], [1]])
    loss_fn = seq2seq.teacher_forcing_loss(model, start_id=START)
    loss, (_, metrics) = loss_fn(params, {}, (source, source_mask, targets, target_mask), None)
    # reference: decode each real prefix on its own, position by position, and average with optax
    memory = model.encode(params, source, source_mask)
    decode = jax.jit(model.decode)
    total, count, hits = 0.0, 0, 0
    for b in range(3):
        for t in range(4):
            if not target_mask[b, t]:
                continue
            prefix = jnp.concatenate([jnp.array([START], jnp.int32), targets[b, :t]])[None]  # (1, t + 1)
            z = decode(params, memory[b : b + 1], source_mask[b : b + 1], prefix)[0, -1]
            total += float(optax.losses.softmax_cross_entropy_with_integer_labels(z, targets[b, t]))
            hits += int(jnp.argmax(z) == targets[b, t])
            count += 1
    assert float(loss) == pytest.approx(total / count, rel=1e-5)
    assert float(metrics["token_accuracy"]) == pytest.approx(hits / count)


@pytest.mark.slow  # a training run, end to end
def test_training_with_teacher_forcing_lowers_the_loss(keys):
    model = _lstm()
    source, source_mask = _source(next(keys), batch=16, width=4)
    targets = jnp.concatenate([source[:, ::-1], jnp.zeros((16, 1), jnp.int32)], axis=1)
    batch = (source, source_mask, targets, targets > 0)
    optimizer = fdl.optim.adam(1e-2)
    step = fdl.train.make_train_step(seq2seq.teacher_forcing_loss(model, start_id=START), optimizer)
    state = fdl.train.init_state(model.init(next(keys)), optimizer)
    state, first = step(state, batch, None)
    for _ in range(30):
        state, metrics = step(state, batch, None)
    assert float(metrics["loss"]) < 0.5 * float(first["loss"])


# ------------------------------------------------------------------- the cached block step


@pytest.mark.parametrize(
    "heads, qkv_features, memory_width, with_mask",
    [  # one configuration in the quick tier, the other three with the slow ones (CI runs all)
        pytest.param(2, None, 8, True, marks=pytest.mark.slow),
        pytest.param(4, None, 8, False, marks=pytest.mark.slow),
        pytest.param(2, 12, 5, True, marks=pytest.mark.slow),
        (1, None, 3, True),
    ],
)
def test_decoder_block_step_is_the_block_position_by_position(
    keys, heads, qkv_features, memory_width, with_mask
):
    batch, length, source, width = 3, 6, 5, 8
    block = fdl.nn.TransformerDecoderBlock(heads, 16, qkv_features=qkv_features)
    params, _, _ = block.init(next(keys), ((length, width), (source, memory_width), (source,)))
    x = jax.random.normal(next(keys), (batch, length, width))
    memory = jax.random.normal(next(keys), (batch, source, memory_width))
    mask = jnp.arange(source)[None, :] < jnp.array([[5], [2], [1]]) if with_mask else None
    inputs = (x, memory, mask) if with_mask else (x, memory)
    expected, _ = block.apply(params, {}, inputs)  # (B, T, D), the block's own forward
    cache = seq2seq.decoder_block_cache(params, memory, length, num_heads=heads)
    # stale values in the slots not yet written must not matter (the causal mask hides them)
    noise = 10.0 * jax.random.normal(next(keys), cache["key"].shape)
    cache = {**cache, "key": noise, "value": -noise}
    step = jax.jit(lambda p, c, x_t, t: seq2seq.decoder_block_step(p, c, x_t, t, mask, num_heads=heads))
    rows = []
    for t in range(length):
        y, cache = step(params, cache, x[:, t : t + 1], jnp.asarray(t, jnp.int32))
        rows.append(y)
    np.testing.assert_allclose(jnp.concatenate(rows, axis=1), expected, atol=2e-5, rtol=2e-5)


def test_decoder_block_cache_holds_the_memory_projections(keys):
    block = fdl.nn.TransformerDecoderBlock(2, 16)
    params, _, _ = block.init(next(keys), ((4, 8), (5, 6)))
    memory = jax.random.normal(next(keys), (3, 5, 6))
    cache = seq2seq.decoder_block_cache(params, memory, 4, num_heads=2)
    p = params["cross_attention"]["value"]
    np.testing.assert_allclose(
        cache["memory_value"].reshape(3, 5, 8),
        np.asarray(memory) @ np.asarray(p["w"]) + np.asarray(p["b"]),
        atol=1e-5,
    )  # written out in NumPy: m W^V + b^V, heads side by side
    assert cache["key"].shape == (3, 4, 2, 4) and float(jnp.abs(cache["key"]).max()) == 0.0


# ------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cached_greedy_decoding_equals_re_decoding_the_prefix(keys, name):
    model = MODELS[name]()
    params = model.init(next(keys))
    source, source_mask = _source(next(keys), batch=6, width=7)
    decode = jax.jit(lambda p, s, m: seq2seq.greedy_decode(model, p, s, m, length=6, start_id=START))
    tokens, logits = decode(params, source, source_mask)
    redecode = jax.jit(  # one program (the eager loop dispatches every operation: 9 s against 1.5 s)
        lambda p, s, m: seq2seq.greedy_decode_full(model, p, s, m, length=6, start_id=START)
    )
    full_tokens, full_logits = redecode(params, source, source_mask)
    assert tokens.shape == (6, 6) and logits.shape == (6, 6, VOCAB)
    np.testing.assert_array_equal(tokens, full_tokens)
    np.testing.assert_allclose(logits, full_logits, atol=2e-5, rtol=2e-5)
    # and one teacher-forced pass over the greedy tokens gives the same logits at every step
    memory = model.encode(params, source, source_mask)
    one_pass = model.decode(params, memory, source_mask, seq2seq.shift_right(tokens, START))
    np.testing.assert_allclose(logits, one_pass, atol=2e-5, rtol=2e-5)
    np.testing.assert_array_equal(tokens, jnp.argmax(logits, axis=-1))


@pytest.mark.parametrize("name", ["lstm", pytest.param("transformer", marks=pytest.mark.slow)])
def test_decoding_ignores_source_padding(keys, name):
    model = MODELS[name]()
    params = model.init(next(keys))
    source = jax.random.randint(next(keys), (2, 4), 3, VOCAB).astype(jnp.int32)
    short, _ = seq2seq.greedy_decode(model, params, source, jnp.ones((2, 4), bool), length=5, start_id=START)
    padded = jnp.concatenate([source, jnp.full((2, 3), 7, jnp.int32)], axis=1)  # junk after the end
    mask = jnp.arange(7)[None, :] < 4
    long, _ = seq2seq.greedy_decode(
        model, params, padded, jnp.broadcast_to(mask, (2, 7)), length=5, start_id=START
    )
    np.testing.assert_array_equal(short, long)


@pytest.mark.parametrize("name", ["lstm", pytest.param("transformer", marks=pytest.mark.slow)])
def test_the_decoder_is_causal(keys, name):
    model = MODELS[name]()
    params = model.init(next(keys))
    source, source_mask = _source(next(keys))
    inputs = jax.random.randint(next(keys), (5, 6), 0, VOCAB).astype(jnp.int32)
    changed = inputs.at[:, 4:].set((inputs[:, 4:] + 1) % VOCAB)
    memory = model.encode(params, source, source_mask)
    before = model.decode(params, memory, source_mask, inputs)
    after = model.decode(params, memory, source_mask, changed)
    np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-6)
    assert float(jnp.abs(before[:, 4:] - after[:, 4:]).max()) > 1e-3  # the later ones do change


def test_greedy_decoding_compiles_once(keys):
    model = _transformer(layers=1)
    params = model.init(next(keys))
    traces = []

    @jax.jit
    def decode(p, s, m):
        traces.append(1)
        return seq2seq.greedy_decode(model, p, s, m, length=4, start_id=START)[0]

    for _ in range(3):
        source, mask = _source(next(keys), batch=2, width=5)
        decode(params, source, mask)
    assert len(traces) == 1


def test_transformer_parameters_are_the_blocks_own():
    model = _transformer(layers=2)
    params = model.init(jax.random.key(0))
    block_params, _, _ = fdl.nn.TransformerDecoderBlock(4, 32).init(
        jax.random.key(1), ((3, 16), (4, 16), (4,))
    )
    structure = jax.tree.structure(block_params)
    assert jax.tree.structure(params["decoder_1"]) == structure
    assert sorted(params) == sorted(
        ["source_embedding", "encoder_0", "encoder_1", "encoder_norm", "target_embedding"]
        + ["decoder_0", "decoder_1", "decoder_norm", "head"]
    )


# --------------------------------------------------------------------------------- errors


def test_bad_arguments_are_named():
    model = _lstm()
    params = model.init(jax.random.key(0))
    source, mask = jnp.ones((2, 3), jnp.int32), jnp.ones((2, 3), bool)
    with pytest.raises(ValueError, match=r"`targets` must be integer token ids \(B, T\), got dtype float32"):
        seq2seq.shift_right(jnp.ones((2, 3)), 1)
    with pytest.raises(ValueError, match="`start_id` must be a non-negative integer, got -1"):
        seq2seq.shift_right(source, -1)
    with pytest.raises(
        ValueError, match=r"`mask` must be a bool mask of the shape of `targets`, \(2, 3\), got dtype int32"
    ):
        seq2seq.sequence_cross_entropy(jnp.zeros((2, 3, 4)), source, source)
    with pytest.raises(
        ValueError, match=r"`logits` must be \(B, T, V\) with \(B, T\) = \(2, 3\).*got shape \(2, 4, 4\)"
    ):
        seq2seq.sequence_cross_entropy(jnp.zeros((2, 4, 4)), source, mask)
    with pytest.raises(ValueError, match=r"`predicted` must have .* at least its length.*got shape \(2, 2\)"):
        seq2seq.exact_match(source[:, :2], source, mask)
    with pytest.raises(TypeError, match=r"`model` must be an fdl\.seq2seq\.EncoderDecoder, got Layer"):
        seq2seq.greedy_decode(model.layer, params, source, mask, length=2, start_id=1)
    with pytest.raises(TypeError, match=r"`model` must be an fdl\.seq2seq\.EncoderDecoder, got tuple"):
        seq2seq.teacher_forcing_loss((1, 2), start_id=1)
    with pytest.raises(ValueError, match="`length` must be a positive integer, got 0"):
        seq2seq.greedy_decode_full(model, params, source, mask, length=0, start_id=1)
    with pytest.raises(
        ValueError,
        match=r"`source_mask` must be a bool mask of the shape of `source`, \(2, 3\).*shape \(2, 4\)",
    ):
        seq2seq.greedy_decode(model, params, source, jnp.ones((2, 4), bool), length=2, start_id=1)
    with pytest.raises(ValueError, match="`hidden_size` must be a positive integer, got 0"):
        seq2seq.lstm_encoder_decoder(5, 4, 0)
    with pytest.raises(ValueError, match="`num_layers` must be a positive integer, got 0"):
        seq2seq.transformer_encoder_decoder(5, 4, num_heads=2, mlp_features=8, num_layers=0)


def test_a_head_count_that_does_not_fit_the_block_is_named():
    block = fdl.nn.TransformerDecoderBlock(2, 16)
    params, _, _ = block.init(jax.random.key(0), ((4, 8), (5, 8)))
    with pytest.raises(ValueError, match="`num_heads`=3 must divide the attention width 8"):
        seq2seq.decoder_block_cache(params, jnp.zeros((1, 5, 8)), 4, num_heads=3)
    cache = seq2seq.decoder_block_cache(params, jnp.zeros((1, 5, 8)), 4, num_heads=2)
    with pytest.raises(ValueError, match="`num_heads` must be a positive integer, got 0"):
        seq2seq.decoder_block_step(params, cache, jnp.zeros((1, 1, 8)), jnp.asarray(0), None, num_heads=0)
    with pytest.raises(ValueError, match=r"`num_heads`=4 is not the head count the cache was built for, 2"):
        seq2seq.decoder_block_step(params, cache, jnp.zeros((1, 1, 8)), jnp.asarray(0), None, num_heads=4)
    with pytest.raises(
        ValueError,
        match=r"`params` must be a TransformerDecoderBlock's parameters .*missing \['self_attention_norm'",
    ):
        seq2seq.decoder_block_cache({"encoder": {}}, jnp.zeros((1, 5, 8)), 4, num_heads=2)
