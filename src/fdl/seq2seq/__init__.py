r"""Sequence to sequence: encoder–decoder models, teacher forcing, and greedy decoding with a cache.

An encoder–decoder factorizes the probability of an output sequence :math:`y = (y_1, \ldots,
y_T)` given an input sequence :math:`x` token by token (Sutskever et al., 2014):

.. math::

    p_\theta(y \mid x) = \prod_{t=1}^{T} p_\theta(y_t \mid y_{<t},\ x), \qquad
    p_\theta(\cdot \mid y_{<t}, x) = \mathrm{softmax}\big(f_\theta(\mathrm{enc}_\theta(x),\
        y_{<t})\big)

* **Teacher forcing** (Williams & Zipser, 1989): in training the decoder reads the *reference*
  prefix, ``decoder_inputs = shift_right(targets)`` :math:`= (\langle s\rangle, y_1, \ldots,
  y_{T-1})`, so all :math:`T` predictions come from one parallel pass, and the loss is the
  masked mean negative log-likelihood (:func:`sequence_cross_entropy`).
* **Greedy decoding**: at test time the decoder reads its own predictions,
  :math:`\hat y_t = \arg\max_v p_\theta(v \mid \hat y_{<t}, x)` (:func:`greedy_decode`).
* **Incremental decoding**: a causal decoder's output at position :math:`t` depends on the
  prefix only, so each new token needs one step, not a re-run of the whole prefix. The LSTM's
  step is its cell; the transformer's step keeps every block's projected keys and values
  :math:`K_{\le t}, V_{\le t}` in a cache (:func:`decoder_block_step`), so step :math:`t`
  projects one position and attends over the cache, :math:`O(D^2 + L D)` per block for a cache of
  :math:`L` slots and width :math:`D`, instead of the :math:`O(t D^2 + t^2 D)` of re-running the
  decoder on the prefix (:func:`greedy_decode_full`, the reference it is tested equal to).

A model is an :class:`EncoderDecoder`: five pure functions over one parameter tree, built by
:func:`lstm_encoder_decoder` or :func:`transformer_encoder_decoder` from fdl's own layers
(:func:`fdl.nn.composite` over ``Embedding``, ``Recurrent(LSTMCell)``,
``TransformerEncoderBlock``, ``TransformerDecoderBlock``, ...). The transformer's cached step
reads the very parameter tree of :func:`fdl.nn.TransformerDecoderBlock` and runs its
computation with the public layers it is made of.

Conventions: token ids are int ``(B, T)``; masks are bool, True at real (non-padded) positions;
``start_id`` is the begin-of-sequence token. Every function is pure and jit-able, with the
model, lengths and ids static.

References:
    I. Sutskever, O. Vinyals and Q. V. Le, "Sequence to Sequence Learning with Neural Networks",
    NeurIPS 2014.
    A. Vaswani, N. Shazeer, N. Parmar, J. Uszkoreit, L. Jones, A. N. Gomez, Ł. Kaiser and
    I. Polosukhin, "Attention Is All You Need", NeurIPS 2017.
    R. J. Williams and D. Zipser, "A Learning Algorithm for Continually Running Fully Recurrent
    Neural Networks", Neural Computation 1(2), 1989 (teacher forcing).
"""

from fdl.seq2seq.decoding import decoder_block_cache, decoder_block_step, greedy_decode, greedy_decode_full
from fdl.seq2seq.models import lstm_encoder_decoder, transformer_encoder_decoder
from fdl.seq2seq.training import (
    EncoderDecoder,
    exact_match,
    sequence_cross_entropy,
    shift_right,
    teacher_forcing_loss,
)

__all__ = [
    "EncoderDecoder",
    "shift_right",
    "sequence_cross_entropy",
    "exact_match",
    "teacher_forcing_loss",
    "greedy_decode",
    "greedy_decode_full",
    "lstm_encoder_decoder",
    "transformer_encoder_decoder",
    "decoder_block_cache",
    "decoder_block_step",
]
