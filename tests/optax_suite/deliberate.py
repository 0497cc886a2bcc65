"""Cases of optax's own suite where fdl differs from optax on purpose, each with its reason.

Keys are ``<test module>__<class>::<method>`` as collected in ``test_optax_suite.py``.
"""

DELIBERATE: dict[str, str] = {
    "transform_test__TransformTest::test_lion_invalid_mode_raises": (
        "fdl's scale_by_lion rejects an unknown `mode` when it is built, naming the argument and "
        "the valid modes; optax's test expects the error only at the first update"
    ),
    "_freezing_test__FreezeTest::test_bad_structure_raises": (
        "fdl's masked refuses a mask that is not a prefix of the parameters with a message that "
        "shows both structures; optax's test expects JAX's own 'Dict key mismatch'"
    ),
    "_freezing_test__SelectiveTransformTest::test_selective_bad_structure": (
        "as test_bad_structure_raises: fdl's message shows the mask's and the parameters' structures"
    ),
    "_freezing_test__FreezeTest::test_scalar_bool_broadcast_jax_bool": (
        "fdl's masks are Python bools (static configuration, refused up front otherwise); optax "
        "also accepts a 0-d JAX bool array"
    ),
    "_clipping_test__ClippingTest::test_clip_by_block_rms": (
        "not a difference: optax's own clip_by_block_rms fails this case on this machine too (the "
        "clipped RMS is 0.9999999, one float32 ulp from the 1.0 the test expects to 7 places); "
        "fdl's result is bit-identical to optax's (tests/optim/test_clip_adaptive.py)"
    ),
    "_freezing_test__SelectiveTransformTest::test_scalar_freeze_all_jax_bool": (
        "as test_scalar_bool_broadcast_jax_bool: fdl's freeze masks are Python bools"
    ),
}

# optax's test_explicit_dtype builds sgd (momentum), adam and adamw with a real state dtype for
# complex64 parameters and expects a real moment (the imaginary part dropped); fdl refuses a real
# mu_dtype / accumulator_dtype for complex parameters, naming both dtypes and the parameter.
# Cases 24-26: state bfloat16, 27-29: state float32 (for sgd_mom, adam, adamw).
for _case in range(24, 30):
    DELIBERATE[f"alias_test__AliasTest::test_explicit_dtype{_case}"] = (
        "fdl refuses a real state dtype for complex parameters (it would drop the imaginary "
        "part: JAX deprecates that cast); optax accepts it"
    )
del _case

# optax 0.2.8 deprecates optimistic_adam (for optimistic_adam_v2) and these cases of its alias
# table expect the DeprecationWarning; fdl's optimistic_adam is a twin kept without deprecation.
for _case in (
    "test_gradient_accumulation40",
    "test_gradient_accumulation41",
    "test_optimization80",
    "test_optimization82",
    "test_optimizers_accept_extra_args20",
    "test_optimizers_can_be_wrapped_in_inject_hyperparams20",
    "test_preserve_dtype40",
    "test_preserve_dtype41",
    "test_state_shape_dtype_shard_stability120",
    "test_state_shape_dtype_shard_stability121",
    "test_state_shape_dtype_shard_stability122",
    "test_state_shape_dtype_shard_stability123",
):
    DELIBERATE[f"alias_test__AliasTest::{_case}"] = (
        "fdl's optimistic_adam is not deprecated (it is twinned beside optimistic_adam_v2); "
        "optax's test expects its DeprecationWarning"
    )
for _case in ("aol", "frobenius", "schatten"):
    DELIBERATE[f"_muon_test__MuonTest::test_dim_nums_combinations_{_case}"] = (
        "the masked leaves of fdl's muon are fdl's MaskedNode (fdl.optim.weight_decay), not "
        "optax's class, which this case checks with isinstance"
    )
del _case
