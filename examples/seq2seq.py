"""Sequence to sequence: an LSTM and a transformer encoder–decoder learn to reverse digit strings.

    python examples/seq2seq.py            # about a minute on a 2-core CPU
    python examples/seq2seq.py --quick    # a smoke run

The source is a string of 1 to 16 digits, the target the same digits reversed, then an end
token: ``3 1 4 1 5 -> 5 1 4 1 3 <end>``. Training draws a fixed pool of random strings of the
trained lengths once (short lengths have few distinct strings, so some test strings of a
trained length are in it); the held-out lengths never appear in training.
Both models (``fdl.seq2seq.lstm_encoder_decoder`` and ``transformer_encoder_decoder``) train by
teacher forcing through ``fdl.fit.fit`` on lengths ``--train-lengths`` except the held-out
``--held-out`` ones, and decode greedily (the transformer from a key/value cache). Prints the
exact-match accuracy (the whole string and its end right) on seen lengths, on the held-out
lengths inside the training range, and on longer strings than any seen; the time per decoded
token (cached vs re-running the decoder on the prefix); and saves exact match against the length
and the learning curves.

What it shows (default settings, about a minute): the transformer reverses every trained
length and the held-out 5 and 9 (exact match 1.000); the LSTM gets 0.85 on the trained lengths
and 0.95 on 5 and 9, falling from length 9 on, as its fixed-size state must carry the whole
string. Neither extrapolates to strings longer than any trained on (about 0.1 for 13 to 16), and
the transformer also fails the one-digit strings it never saw (0.23), while the LSTM gets them
all. Decoding a batch of 256 on the idle 2-core host, the cached transformer takes about 12 us
per token against 36 us re-running its decoder on the prefix; the LSTM about 3 us (per token of
the batch: the time of a step divided by the 256 strings it decodes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl
from fdl import seq2seq

PAD, START, END, DIGIT = 0, 1, 2, 3  # digit d is token 3 + d
VOCAB = DIGIT + 10


def make_data(rng: np.random.Generator, lengths: list[int], count: int, width: int):
    """``(source (N, width), source_mask, target (N, width + 1), target_mask)``, numpy."""
    n = rng.choice(np.asarray(lengths), count)[:, None]  # (N, 1) string lengths
    pos = np.arange(width)[None, :]  # (1, W)
    source = np.where(pos < n, DIGIT + rng.integers(0, 10, (count, width)), PAD)  # (N, W)
    flipped = np.take_along_axis(source, np.clip(n - 1 - pos, 0, width - 1), axis=1)  # (N, W)
    target = np.concatenate([np.where(pos < n, flipped, PAD), np.full((count, 1), PAD)], axis=1)
    steps = np.arange(width + 1)[None, :]  # (1, W + 1)
    target = np.where(steps == n, END, target)  # (N, W + 1): the end token after the digits
    return source.astype(np.int32), pos < n, target.astype(np.int32), steps <= n


def decoder(model, length: int, full: bool = False):
    decode = seq2seq.greedy_decode_full if full else seq2seq.greedy_decode
    return jax.jit(
        lambda params, source, mask: decode(model, params, source, mask, length=length, start_id=START)[0]
    )


def accuracy(decode, params, split) -> float:
    source, source_mask, target, target_mask = split
    return float(jnp.mean(seq2seq.exact_match(decode(params, source, source_mask), target, target_mask)))


def per_token_ms(decode, params, source, mask, repeats: int) -> float:
    jax.block_until_ready(decode(params, source, mask))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(decode(params, source, mask))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times)) / (source.shape[0] * (source.shape[1] + 1))


def train(label, model, args, train_split, checks):
    decode = decoder(model, args.max_length + 1)

    def evaluate(params, layer_state):
        source, source_mask, target, target_mask = checks["held_out"]  # the learning curve
        return {
            "held_out": jnp.mean(
                seq2seq.exact_match(decode(params, source, source_mask), target, target_mask)
            )
        }

    schedule = fdl.optim.warmup_cosine_decay_schedule(0.0, args.learning_rate, args.steps // 10, args.steps)
    start = time.perf_counter()
    result = fdl.fit.fit(
        seq2seq.teacher_forcing_loss(model, start_id=START),
        fdl.optim.chain(fdl.optim.clip_by_global_norm(1.0), fdl.optim.adam(schedule)),
        model.init(jax.random.key(args.seed)),
        train_split,
        key=jax.random.key(args.seed + 1),
        batch_size=args.batch_size,
        steps=args.steps,
        evaluate=fdl.fit.Eval(evaluate, every=args.eval_every),
        logging=fdl.fit.Logging(progress=not args.quiet),
    )
    print(f"{label}: trained {args.steps} steps in {time.perf_counter() - start:.1f} s")
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-lengths", type=int, nargs=2, default=(2, 12), help="min and max")
    parser.add_argument("--held-out", type=int, nargs="*", default=[5, 9], help="lengths never trained on")
    parser.add_argument("--max-length", type=int, default=16, help="longest test string")
    parser.add_argument("--width", type=int, default=64, help="embedding / model width")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM hidden size")
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks per stack")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--test-size", type=int, default=256, help="test strings per length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("seq2seq_out"), help="folder for the plot")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.eval_every, args.test_size = 300, 150, 64
    low, high = args.train_lengths
    seen = [n for n in range(low, high + 1) if n not in args.held_out]
    if not seen or high > args.max_length:
        parser.error(f"--train-lengths {low} {high} must leave a length to train on and end by --max-length")
    if not args.held_out or not all(low < n < high for n in args.held_out):
        parser.error(
            f"--held-out {args.held_out} must name lengths strictly inside --train-lengths {low} {high}"
        )

    rng = np.random.default_rng(args.seed)
    width = args.max_length
    train_split = make_data(rng, seen, 100 * args.batch_size, high)
    by_length = {n: make_data(rng, [n], args.test_size, width) for n in range(1, width + 1)}
    groups = {
        "seen": seen,
        "held_out": args.held_out,
        "shorter": list(range(1, low)),
        "longer": list(range(high + 1, width + 1)),
    }
    checks = {
        name: tuple(np.concatenate(parts) for parts in zip(*(by_length[n] for n in lengths), strict=True))
        for name, lengths in groups.items()
        if lengths
    }
    models = {
        "LSTM": seq2seq.lstm_encoder_decoder(VOCAB, args.width, args.hidden),
        "transformer": seq2seq.transformer_encoder_decoder(
            VOCAB, args.width, num_heads=args.heads, mlp_features=4 * args.width, num_layers=args.layers
        ),
    }
    metrics: dict[str, float] = {}
    curves, per_length = {}, {}
    for label, model in models.items():
        result = train(label, model, args, train_split, checks)
        curves[label] = [
            (row["step"], row["eval_held_out"]) for row in result.history if "eval_held_out" in row
        ]
        decode = decoder(model, width + 1)
        per_length[label] = [accuracy(decode, result.params, by_length[n]) for n in range(1, width + 1)]
        for name in checks:
            metrics[f"{label} {name}"] = accuracy(decode, result.params, checks[name])
        print(f"{label}: exact match (greedy) by test lengths:")
        for name in checks:
            print(f"  {name:9s} {groups[name]!s:42s} {metrics[f'{label} {name}']:.3f}")
        source, mask = by_length[width][:2]
        ways = {"cached": decode, "full re-decoding": decoder(model, width + 1, full=True)}
        for way, fn in ways.items():
            if label == "LSTM" and way != "cached":
                continue
            metrics[f"{label} {way} ms/token"] = per_token_ms(fn, result.params, source, mask, repeats=5)
            print(
                f"{label} greedy decoding, {way}: {1e3 * metrics[f'{label} {way} ms/token']:.2f} us per token"
            )

    fig = fdl.plot.figure((11, 4))
    ax_len, ax_curve = fig.subplots(1, 2)
    lengths = np.arange(1, width + 1)
    for label in models:
        ax_len.plot(lengths, per_length[label], marker="o", label=label)
        speed = f"{1e3 * metrics[f'{label} cached ms/token']:.1f} us/token decoding"
        ax_curve.plot(*zip(*curves[label], strict=True), marker="o", label=f"{label} ({speed})")
    for n in args.held_out:
        ax_len.axvline(n, color="gray", linestyle=":", alpha=0.7)
    ax_len.axvspan(high + 0.5, width + 0.5, color="red", alpha=0.08, label="not trained on")
    ax_len.axvspan(0.5, low - 0.5, color="red", alpha=0.08)
    ax_len.set(xlabel="string length (dotted: held out)", ylabel="exact match (greedy)", ylim=(-0.02, 1.02))
    ax_len.set_title("exact match vs length")
    ax_curve.set(xlabel="training step", ylabel=f"exact match, lengths {args.held_out}", ylim=(-0.02, 1.02))
    ax_curve.set_title("learning curves on the held-out lengths")
    for ax in (ax_len, ax_curve):
        ax.grid(alpha=0.3)
        ax.legend()
    args.out.mkdir(parents=True, exist_ok=True)
    fdl.plot.save_png(fig, args.out / "seq2seq.png")
    print(f"plot saved to {args.out / 'seq2seq.png'}")
    return metrics


if __name__ == "__main__":
    main()
