"""helpers.stats: the t-quantile and t-interval against SciPy, and equal to chapter 10b's own versions."""

import math

import pytest
from scipy import stats as scipy_stats

from helpers import stats
from notebook_code import load_notebook


def test_t_quantile_equals_scipy():
    for df in (1, 2, 4, 9, 19, 29, 100):
        for p in (0.9, 0.95, 0.975, 0.995):
            assert stats.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), abs=2e-4), (p, df)


def test_t_interval_by_hand_and_against_scipy():
    values = [0.81, 0.84, 0.79, 0.86, 0.83]
    mean, half = stats.t_interval(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 5,
                                       scale=scipy_stats.sem(values))
    assert mean == pytest.approx((low + high) / 2) and half == pytest.approx((high - low) / 2, abs=1e-5)
    mean, half = stats.t_interval([1.0, 3.0], confidence=0.9)  # s = sqrt(2), t_0.95,1 = 6.314
    assert mean == 2.0 and half == pytest.approx(6.314 * math.sqrt(2) / math.sqrt(2), abs=1e-3)
    assert stats.t_interval([0.5, 0.5, 0.5])[1] == 0.0


def test_bad_input_says_what_to_change():
    with pytest.raises(ValueError, match="at least 2 values"):
        stats.t_interval([0.5])
    with pytest.raises(ValueError, match="confidence"):
        stats.t_interval([0.5, 0.6], confidence=95)
    with pytest.raises(ValueError, match="between 0.5 and 1"):
        stats.t_quantile(0.025, 3)
    with pytest.raises(ValueError, match="same number"):
        stats.paired_differences([1, 2], [1])


def test_paired_differences():
    assert stats.paired_differences([0.8, 0.9], [0.7, 0.95]) == pytest.approx([0.1, -0.05])


def test_same_as_chapter_10b():
    "Chapter 10b derives these from scratch; the helper must stay the same function."
    ch = load_notebook("10b_bert_fine_tuning")
    for df in (1, 4, 29):
        assert stats.t_quantile(0.975, df) == ch.t_quantile(0.975, df)
    values = [0.61, 0.66, 0.58, 0.64]
    assert stats.t_interval(values) == ch.t_interval(values)
