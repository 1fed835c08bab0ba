"""Column helpers the index and TCP tiers share."""

from __future__ import annotations

import numpy as np


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes numbered in order of first appearance, and the distinct values.

    Hash-based (pandas' factorize): linear in the rows, where ``np.unique``
    sorts and numbers by value.  It runs on every frame of a capture, so the
    difference is ~50 ms per million.  pandas is imported at the first call,
    not with the module: importing a decoder stays light.
    """
    from pandas import factorize as _factorize
    codes, uniques = _factorize(values)
    return codes, np.asarray(uniques)
