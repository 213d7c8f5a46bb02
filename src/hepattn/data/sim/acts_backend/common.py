"""What every part of the ACTS backend shares: units, log level, seeds."""

import acts
import numpy as np

U = acts.UnitConstants
QUIET = acts.logging.ERROR


def derived_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent ACTS seeds derived from ``seed`` (none equal to it, which Fatras uses)."""
    states = np.random.SeedSequence([int(seed), 7]).generate_state(n, np.uint64)
    return [int(s) for s in states]
