"""A small set of built-in classifiers, by name, for ``fdl train`` and quick experiments.

* ``mlp``: ``Dense(h) -> ReLU -> Dropout`` per hidden width, then ``Dense(classes)``, He-normal
  weights; takes flat inputs ``(F,)``.
* ``cnn``: a ``body`` of two blocks ``Conv2D 3x3 -> BatchNorm -> ReLU -> MaxPool 2``
  (``block_1``: 32 channels, ``block_2``: 64), ``Flatten``, ``Dropout``, ``Dense(128) -> ReLU``,
  then a ``head`` ``Dense(classes)``; takes images ``(H, W, C)`` with H and W divisible by 4.
  Paths read ``body/block_1/conv2d_0/w`` and ``head/w``, so the body can be frozen
  (``trainable="head"``, :func:`fdl.nn.eval_mode`) and the head swapped (:func:`fdl.nn.swap`).
  Batch norm makes it stateful: train it with a step that threads the layer state
  (``fdl.train.make_train_step`` with a ``fdl.train.TrainState``, or ``fdl.fit.fit``).
"""

from __future__ import annotations

from collections.abc import Sequence

from fdl import initializers, nn

__all__ = ["MODELS", "build_model", "model_names", "wants_flat_input"]

#: The names :func:`build_model` builds (and ``fdl train --model`` takes).
MODELS = ("mlp", "cnn")


def model_names() -> list[str]:
    """The names :func:`build_model` knows."""
    return list(MODELS)


def wants_flat_input(name: str) -> bool:
    """Whether the model takes flat vectors (``mlp``) rather than images (``cnn``)."""
    return _check_name(name) == "mlp"


def _check_name(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return name


def build_model(
    name: str, num_classes: int, *, hidden: Sequence[int] = (256, 256), dropout: float = 0.1
) -> nn.Layer:
    """The model ``name`` with ``num_classes`` outputs (logits).

    Args:
      name: ``"mlp"`` or ``"cnn"``.
      num_classes: the number of output logits.
      hidden: the MLP's hidden widths (ignored by the CNN).
      dropout: the drop probability of the dropout layers.

    Raises:
      ValueError: an unknown name (listing the known ones), or invalid widths or rate.

    >>> import jax, fdl
    >>> model = fdl.models.build_model("cnn", 10)
    >>> model.init(jax.random.key(0), (8, 8, 1))[2]
    (10,)
    """
    he = initializers.he_normal()  # Var[W] = 2 / fan_in, for ReLU
    if _check_name(name) == "mlp":
        return nn.MLP((*hidden, num_classes), dropout_rate=dropout, w_init=he, name="mlp")

    def block(features: int, name: str) -> nn.Layer:
        return nn.Serial(
            nn.Conv2D(features, 3, padding="SAME", use_bias=False, w_init=he),
            nn.BatchNorm(),
            nn.Relu(),
            nn.MaxPool2D(2),
            name=name,
        )

    body = nn.Serial(
        block(32, "block_1"),  # (H, W, C) -> (H/2, W/2, 32)
        block(64, "block_2"),  # -> (H/4, W/4, 64)
        nn.Flatten(3),
        nn.Dropout(dropout),
        nn.Dense(128, w_init=he),
        nn.Relu(),
        name="body",
    )
    return nn.Serial(body, nn.Dense(num_classes, name="head"), name="cnn")
