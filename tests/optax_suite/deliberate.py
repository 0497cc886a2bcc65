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
