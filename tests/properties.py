"""Shared pieces of the property-based (hypothesis) tests of bad input.

Each property says: the call gives the correct result (checked against NumPy)
or raises a clear error, one that names the value or shape received. Runs are
small (10 to 20 cases a test: CI time is scarce) and derandomized (the same
cases every run, so CI is stable); run
`pytest --hypothesis-show-statistics tests/test_properties_*.py` to see how
many cases each test tried.
"""

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def small(max_examples=15):
    """Settings of a small, repeatable run (no deadline: the first call traces)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def floats(low=-5.0, high=5.0, width=32):
    return st.floats(low, high, width=width, allow_nan=False, allow_infinity=False)


def batch_shapes(max_rank=3, min_side=0, max_side=4):
    """Leading (batch) axes: one to `max_rank` axes, sizes including 0 (empty batches)."""
    return st.lists(st.integers(min_side, max_side), min_size=1, max_size=max_rank).map(tuple)


def arrays(shape, low=-5.0, high=5.0, dtype=np.float32):
    return hnp.arrays(dtype, shape, elements=floats(low, high, width=8 * np.dtype(dtype).itemsize))


def with_non_finite(draw, array, values=(np.nan, np.inf, -np.inf)):
    """`array` with `values` written at a few drawn positions; returns (array, mask of touched rows)."""
    array = np.array(array, copy=True)
    rows = np.zeros(array.shape[: max(array.ndim - 1, 0)], dtype=bool)
    if array.size == 0:
        return array, rows
    count = draw(st.integers(1, min(3, array.size)))
    for _ in range(count):
        index = tuple(draw(st.integers(0, n - 1)) for n in array.shape)
        array[index] = draw(st.sampled_from(list(values)))
        rows[index[:-1]] = True
    return array, rows


# Values that are not a positive integer (floats count as not: 3.0 is refused too).
not_positive_ints = st.one_of(
    st.integers(-3, 0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
    st.just([2]),
)


def assert_names(error, *fragments):
    """The error message contains every fragment (the values or shapes received)."""
    message = str(error)
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!r} not named in: {message}"
