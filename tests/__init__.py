"""fdl's test suite, a package so that test modules import shared helpers as plain modules
(``from tests.optim.helpers import run_trajectories``) rather than through fixtures."""
