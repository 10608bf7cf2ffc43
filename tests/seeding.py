"""Random generators for tests: fresh data every run, yet every run can be repeated.

The base seed is ``DUPSCOPE_TEST_SEED`` when set, else drawn once per session; pytest prints it
in its header, so a failure on fresh random inputs is reproduced with
``DUPSCOPE_TEST_SEED=<seed> pytest ...``. Each call of :func:`fresh_rng` gives the next
generator of that sequence.
"""

from __future__ import annotations

import itertools
import os
import secrets

import numpy as np

SEED = int(os.environ.get("DUPSCOPE_TEST_SEED") or secrets.randbits(32))
_counter = itertools.count()


def fresh_rng() -> np.random.Generator:
    """The next generator derived from :data:`SEED`."""
    return np.random.default_rng([SEED, next(_counter)])
