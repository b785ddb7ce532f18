"""contracts.arrays' grouped sorts against numpy's stable sorts."""
import numpy as np
import pytest

from contracts.arrays import grouped_order, sort_segments


@pytest.mark.parametrize("seed", range(4))
def test_grouped_order_is_a_stable_lexsort(seed):
    """Small, large and very large groups, groups already in order, many ties, NaN, infinities and signed zeros: the order is
    np.lexsort's (stable; NaN last; -0.0 equal to 0.0)."""
    rng = np.random.default_rng(seed)
    for n, n_groups in ((0, 1), (1, 1), (30, 40), (3000, 7), (5000, 400), (20_000, 3)):
        group = rng.integers(0, n_groups, n)
        primary = rng.choice(np.array([0.0, -0.0, 1.5, -2.0, np.nan, np.inf, -np.inf, 0.25]), n)
        secondary = np.round(rng.normal(size=n), 1)
        secondary[rng.random(n) < 0.05] = np.nan
        assert (grouped_order(group, n_groups, primary) == np.lexsort((primary, group))).all()
        assert (grouped_order(group, n_groups, primary, secondary) == np.lexsort((secondary, primary, group))).all()
        presorted = np.lexsort((primary, group))
        assert (grouped_order(group[presorted], n_groups, primary[presorted]) == np.arange(n)).all()


def test_sort_segments_sorts_each_segment_in_place():
    rng = np.random.default_rng(5)
    values = rng.random(2000).astype(np.float32).astype(np.float64)  # float32 values: most key bytes shared
    start = np.array([0, 3, 3, 200, 1500, 2000])
    order = rng.permutation(2000)
    want = np.concatenate([seg[np.argsort(values[seg], kind="stable")] for seg in np.split(order, start[1:-1])])
    sort_segments(order, start, values, np.empty(0))
    assert (order == want).all()
