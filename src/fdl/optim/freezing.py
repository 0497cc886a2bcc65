r"""Different optimizers for different parts of the parameters, and freezing on the optimizer side.

:func:`partition` (also spelled :func:`multi_transform`, optax's older name) gives each
parameter leaf a *label* and runs, for each label, its own transformation on the leaves that
carry it, each with its own state:

.. math::

    u_i = T_{\ell(i)}(g)_i, \qquad \ell(i) \in \text{the keys of } \{\text{label}: T\}

Freezing is the special case of a transformation that outputs zeros (:func:`set_to_zero`):
:func:`freeze` zeroes the masked leaves, :func:`selective_transform` runs an optimizer on the
rest. Labels can come from path patterns (:func:`labels_by_path`), so freezing a body reads::

    partition({"train": adam(1e-3), "freeze": set_to_zero()},
              labels_by_path({"body/**": "freeze"}, default="train"))

This is the optimizer side of freezing: the frozen leaves' gradients are still computed (and
then zeroed) unless the train step itself takes the gradient of the trainable part only
(``fdl.train.make_train_step(..., trainable=...)``, the model side, which skips their backward
pass). Inside one jitted step XLA drops computations whose results are only ever multiplied
by zero, but not the gradients themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from fdl._checks import check_same_shapes, names_errors
from fdl._paths import nearest, path_label, path_matches, path_string
from fdl.optim.base import GradientTransformation, init_empty_state, with_extra_args_support
from fdl.optim.weight_decay import Mask, masked
from fdl.tree import floats

__all__ = [
    "set_to_zero",
    "PartitionState",
    "MultiTransformState",
    "partition",
    "multi_transform",
    "freeze",
    "selective_transform",
    "labels_by_path",
]

PyTree = Any
Labels = PyTree | Callable[[PyTree], PyTree]


def set_to_zero() -> GradientTransformation:
    r"""Map every update to zero: :math:`u = 0` (stateless). Paired with a mask or a
    partition, the parameters it covers stay exactly where they are.

    >>> import jax.numpy as jnp
    >>> u, _ = set_to_zero().update(jnp.asarray([1.0, -2.0]), init_empty_state(None))
    >>> u.tolist()
    [0.0, 0.0]
    """

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        if params is not None:
            check_same_shapes("set_to_zero", "`updates`", updates, "`params`", params)
        del params, extra_args
        return jax.tree.map(lambda g: jax.numpy.zeros_like(g), updates), state

    return GradientTransformation(init_empty_state, update)


class PartitionState(NamedTuple):
    """:func:`partition`'s state: ``inner_states[label]`` is the state of that label's
    transformation (a :class:`~fdl.optim.weight_decay.MaskedState`), as optax's."""

    inner_states: Mapping[Hashable, Any]


def _label_tree(param_labels: Labels, tree: PyTree) -> PyTree:
    return param_labels(tree) if callable(param_labels) else param_labels


def _check_labels(caller: str, labels: PyTree, tree: PyTree, known: Mapping[Hashable, Any]) -> None:
    """Every label is a key of ``known``, and the labels fit ``tree`` (a prefix of it)."""
    used = jax.tree.leaves(labels)
    unknown = sorted({repr(label) for label in used if label not in known})
    if unknown:
        raise ValueError(
            f"{caller}: the labels {', '.join(unknown)} have no transformation; the transforms "
            f"are labelled {', '.join(sorted(repr(key) for key in known))}"
        )
    try:
        jax.tree.map(lambda label, subtree: None, labels, tree)
    except ValueError as error:
        raise ValueError(
            f"{caller}: the labels must have the structure of the parameters (or a prefix of "
            f"it), one label per leaf; labels: {jax.tree.structure(labels)}, parameters: "
            f"{jax.tree.structure(tree)}"
        ) from error


@names_errors("partition")
def partition(
    transforms: Mapping[Hashable, GradientTransformation],
    param_labels: Labels,
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    r"""Run ``transforms[label]`` on the leaves labelled ``label``, each with its own state.

    Args:
      transforms: ``{label: transformation}``.
      param_labels: a pytree of labels with the parameters' structure (or a prefix of it: a
        label at a subtree covers the whole subtree), or a function ``params -> such a
        tree`` (called on the parameters in ``init``, on the updates in ``update``), e.g.
        :func:`labels_by_path`.
      mask_compatible_extra_args: also mask the extra keyword arguments of ``update`` whose
        tree structure is the updates' (as :func:`~fdl.optim.weight_decay.masked`).

    Returns:
      A transformation with state :class:`PartitionState` ``(inner_states,)``: for each label
      (in the order of ``transforms``) its transformation's state, restricted to its leaves.

    Raises:
      ValueError: in ``init``, a label with no transformation (listing the unknown labels and
        the known ones), or a label tree that does not fit the parameters.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import sgd
    >>> opt = partition({"fast": sgd(1.0), "slow": sgd(0.5)}, {"w": "fast", "b": "slow"})
    >>> grads = {"w": jnp.ones(1), "b": jnp.ones(1)}
    >>> u, state = opt.update(grads, opt.init(grads))
    >>> {k: v.tolist() for k, v in u.items()}, list(state.inner_states)
    ({'b': [-0.5], 'w': [-1.0]}, ['fast', 'slow'])

    Differs from optax:
      A label tree that is not a prefix of the parameters fails in ``init`` with a message
      that shows both structures (optax fails inside ``masked``).
    """
    if not isinstance(transforms, Mapping) or not transforms:
        raise ValueError(
            f"`transforms` must be a non-empty dict of label -> transformation, got {transforms!r}"
        )
    for label, transform in transforms.items():
        if not (callable(getattr(transform, "init", None)) and callable(getattr(transform, "update", None))):
            raise TypeError(
                f"`transforms[{label!r}]` must be a GradientTransformation (init, update), got {transform!r}"
            )
    transforms = {label: with_extra_args_support(transform) for label, transform in transforms.items()}

    def restricted(label: Hashable, labels: PyTree) -> GradientTransformation:
        mask = jax.tree.map(lambda leaf: bool(leaf == label), labels)
        return masked(transforms[label], mask, mask_compatible_extra_args=mask_compatible_extra_args)

    def init(params: PyTree) -> PartitionState:
        labels = _label_tree(param_labels, params)
        _check_labels("partition", labels, params, transforms)
        return PartitionState({label: restricted(label, labels).init(params) for label in transforms})

    def update(updates, state, params=None, **extra_args):
        labels = _label_tree(param_labels, updates)
        new_states = {}
        for label in transforms:
            updates, new_states[label] = restricted(label, labels).update(
                updates, state.inner_states[label], params, **extra_args
            )
        return updates, PartitionState(new_states)

    return GradientTransformation(init, update)


multi_transform = partition
MultiTransformState = PartitionState
"""optax's older name for :func:`partition` (``optax.multi_transform``), kept by optax for
backward compatibility."""


@names_errors("freeze")
def freeze(mask: Mask) -> GradientTransformation:
    r"""Zero the updates where ``mask`` is True (those parameters stay fixed); pass the others
    through: ``masked(set_to_zero(), mask)``.

    Args:
      mask: a Python bool, a pytree of them with the parameters' structure (or a prefix), or a
        function of the parameters returning one (as :func:`~fdl.optim.weight_decay.masked`).

    >>> import jax.numpy as jnp
    >>> grads = {"a": jnp.ones(1), "b": jnp.ones(2)}
    >>> opt = freeze({"a": True, "b": False})
    >>> u, _ = opt.update(grads, opt.init(grads))
    >>> {k: v.tolist() for k, v in u.items()}
    {'a': [0.0], 'b': [1.0, 1.0]}
    """
    return masked(set_to_zero(), mask)


@names_errors("selective_transform")
def selective_transform(optimizer: GradientTransformation, *, freeze_mask: PyTree) -> GradientTransformation:
    r"""Run ``optimizer`` on the leaves where ``freeze_mask`` is False and keep the others fixed:
    ``partition({"train": optimizer, "freeze": set_to_zero()}, labels)``, the labels
    ``"freeze"`` where the mask is True. Unlike :func:`freeze` after an optimizer, the
    optimizer keeps no state for the frozen leaves.

    Args:
      optimizer: the transformation for the trainable leaves.
      freeze_mask: a Python bool or a pytree of them (the parameters' structure or a prefix).

    >>> import jax.numpy as jnp
    >>> from fdl.optim import adam
    >>> params = {"a": jnp.ones(1), "b": jnp.ones(2)}
    >>> opt = selective_transform(adam(0.1), freeze_mask={"a": True, "b": False})
    >>> u, state = opt.update(params, opt.init(params), params)
    >>> {k: [round(x, 4) for x in v.tolist()] for k, v in u.items()}
    {'a': [0.0], 'b': [-0.1, -0.1]}
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(freeze_mask):
        if not isinstance(leaf, bool | np.bool_):
            raise TypeError(
                f"`freeze_mask` leaf {path_label(path)} must be a Python bool (the "
                f"mask is static configuration), got {leaf!r}"
            )
    labels = jax.tree.map(lambda frozen: "freeze" if frozen else "train", freeze_mask)
    return partition({"train": optimizer, "freeze": set_to_zero()}, lambda params: labels)


def labels_by_path(
    rules: Mapping[str, Hashable], default: Hashable | None = None
) -> Callable[[PyTree], PyTree]:
    r"""A labelling function for :func:`partition` from path patterns: each leaf gets the label
    of the first pattern (in ``rules``' order) its path matches, else ``default``.

    Paths and patterns are :func:`fdl.nn.select`'s (``encoder/conv_1/w``; ``*`` within a
    segment, ``**`` across segments, a part's name covers every leaf under it).

    Args:
      rules: ``{pattern: label}``, tried in order.
      default: the label of a leaf no pattern matches; ``None`` makes such a leaf an error.

    Returns:
      ``labels(params) -> a tree of labels like params``.

    Raises:
      ValueError: (when called) a pattern that matches no leaf, or, without a default, a leaf
        that no pattern matches (each listed with the nearest paths).

    >>> import jax.numpy as jnp
    >>> params = {"body": {"w": jnp.ones(2), "b": jnp.ones(1)}, "head": {"w": jnp.ones(2)}}
    >>> labels_by_path({"body/**": "freeze"}, default="train")(params)
    {'body': {'b': 'freeze', 'w': 'freeze'}, 'head': {'w': 'train'}}
    """
    if not isinstance(rules, Mapping) or not rules:
        raise ValueError(
            f"labels_by_path: `rules` must be a non-empty dict of pattern -> label, got {rules!r}"
        )
    for pattern in rules:
        if not isinstance(pattern, str) or not pattern.strip("/"):
            raise ValueError(
                f"labels_by_path: each pattern must be a non-empty string like 'body/**', got {pattern!r}"
            )

    def labels(params: PyTree) -> PyTree:
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        paths = [path_string(path) for path, _ in flat]
        for pattern in rules:
            if not any(path_matches(path, pattern) for path in paths):
                raise ValueError(
                    f"labels_by_path: the pattern {pattern!r} matches no parameter; {nearest(pattern, paths)}"
                )
        out = []
        for path in paths:
            label = next((rules[pattern] for pattern in rules if path_matches(path, pattern)), default)
            if label is None:
                raise ValueError(
                    f"labels_by_path: the parameter {path!r} matches no pattern of "
                    f"{list(rules)} and there is no `default` label"
                )
            out.append(label)
        return jax.tree.unflatten(treedef, out)

    return labels
