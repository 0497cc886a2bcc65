"""Cases of optax's own suite where fdl differs from optax on purpose, each with its reason.

Keys are ``<test module>__<class>::<method>`` as collected in ``test_optax_suite.py``.
"""

DELIBERATE: dict[str, str] = {
    "transform_test__TransformTest::test_lion_invalid_mode_raises": (
        "fdl's scale_by_lion rejects an unknown `mode` when it is built, naming the argument and "
        "the valid modes; optax's test expects the error only at the first update"
    ),
}
