"""The comparison's statistics against textbook values and hand formulas (stages/statistics.py)."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from stages import statistics

# Student's t quantiles from a printed t-table (two-sided 95%): df = 2 and df = 4.
T_975_DF2 = 4.303
T_975_DF4 = 2.776


@pytest.mark.parametrize(
    ("first", "second", "statistic", "degrees", "p_value"),
    [
        # Wikipedia, "Welch's t-test", examples 1 and 2:
        # t = -2.46, df = 24.99, p = 0.021; t = -1.57, df = 9.9, p = 0.149.
        (
            [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4],
            [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4],
            -2.46, 24.99, 0.021,
        ),
        (
            [17.2, 20.9, 22.6, 18.1, 21.7, 21.4, 23.5, 24.2, 14.7, 21.8],
            [21.5, 22.8, 21.0, 23.0, 21.6, 23.6, 22.5, 20.7, 23.4, 21.8, 20.7, 21.7, 21.5, 22.5, 23.6, 21.5, 22.5,
             23.5, 21.5, 21.8],
            -1.57, 9.9, 0.149,
        ),
    ],
)  # fmt: skip
def test_welch_gives_the_textbook_values_and_the_formula_agrees(first, second, statistic, degrees, p_value):
    result = statistics.welch(first, second)
    assert result["p_value"] == pytest.approx(p_value, abs=0.0005)
    # Welch's formula by hand: standard error, Welch-Satterthwaite degrees of freedom, two-sided t tail.
    variances = [np.var(sample, ddof=1) / len(sample) for sample in (first, second)]
    error = math.sqrt(sum(variances))
    df = sum(variances) ** 2 / sum(variance**2 / (len(sample) - 1) for variance, sample in
                                   zip(variances, (first, second), strict=True))  # fmt: skip
    t = (np.mean(first) - np.mean(second)) / error
    assert t == pytest.approx(statistic, abs=0.005) and df == pytest.approx(degrees, abs=0.05)
    assert result["p_value"] == pytest.approx(2 * scipy_stats.t.sf(abs(t), df), rel=1e-9)
    half_width = scipy_stats.t.ppf(0.975, df) * error
    assert result["interval"] == pytest.approx((t * error - half_width, t * error + half_width), rel=1e-9)


def test_holm_matches_the_textbook_example_and_skips_untested_pairs():
    # Wikipedia, "Holm-Bonferroni method": p = 0.01, 0.04, 0.03, 0.005 at 0.05 rejects the first and the fourth.
    adjusted = statistics.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]
    assert statistics.holm([0.5, 0.9]) == [1.0, 1.0]
    # A pair with no test (None) is not one of the family: the other two are corrected as two.
    assert statistics.holm([0.02, None, 0.04]) == pytest.approx([0.04, None, 0.04])


def test_mean_interval_is_students_t_interval():
    values = [0.985, 0.987, 0.989]  # mean 0.987, s = 0.002
    low, high = statistics.mean_interval(values)
    half = T_975_DF2 * 0.002 / math.sqrt(3)
    assert (low, high) == pytest.approx((0.987 - half, 0.987 + half), abs=1e-6)
    assert statistics.mean_interval([0.98]) is None


def test_prediction_interval_is_mean_plus_minus_t_s_root_one_plus_one_over_n():
    values = [0.985, 0.987, 0.989]
    low, high = statistics.prediction_interval(values)
    half = T_975_DF2 * 0.002 * math.sqrt(1 + 1 / 3)  # = 0.00994
    assert (low, high) == pytest.approx((0.987 - half, 0.987 + half), abs=1e-6)
    # At n = 3 it is sqrt(n + 1) = 2 times the confidence interval of the mean.
    mean_low, mean_high = statistics.mean_interval(values)
    assert (high - low) / (mean_high - mean_low) == pytest.approx(2.0)
    # Five values: 0.990, 0.991, 0.992, 0.993, 0.994; mean 0.992, s = sqrt(0.00001 / 4) = 0.0015811.
    five = statistics.prediction_interval([0.990, 0.991, 0.992, 0.993, 0.994])
    half = T_975_DF4 * 0.0015811 * math.sqrt(1.2)
    assert five == pytest.approx((0.992 - half, 0.992 + half), abs=1e-5)


@pytest.mark.parametrize("values", [[0.98], [0.99, 0.99, 0.99]])
def test_no_interval_without_two_seeds_and_a_spread(values):
    assert statistics.prediction_interval(values) is None and statistics.mean_interval(values) is None


def test_equivalence_with_unequal_spreads_and_sizes_uses_welchs_degrees_of_freedom():
    first, second, margin = [0.990, 0.992, 0.994, 0.996], [0.990, 0.991], 0.004
    # Means 0.993 and 0.9905, difference 0.0025; variances 6.6667e-6 (n 4) and 5e-7 (n 2); squared standard
    # errors 1.6667e-6 and 2.5e-7, error sqrt(1.9167e-6) = 1.3844e-3; Welch-Satterthwaite df =
    # (1.9167e-6)^2 / ((1.6667e-6)^2 / 3 + (2.5e-7)^2 / 1) = 3.6738e-12 / 9.8843e-13 = 3.717.
    error, df = math.sqrt(1.6667e-6 + 2.5e-7), 3.717
    lower = scipy_stats.t.sf((0.0025 + margin) / error, df)
    upper = scipy_stats.t.cdf((0.0025 - margin) / error, df)
    assert statistics.equivalence(first, second, margin) == pytest.approx(max(lower, upper), rel=2e-3)


def test_equivalence_p_is_the_larger_one_sided_welch_p_by_hand():
    first, second, margin = [0.985, 0.987, 0.989], [0.986, 0.988, 0.990], 0.002
    # Difference -0.001, standard error sqrt(0.002^2/3 + 0.002^2/3) = 0.0016330, df 4 (equal spreads).
    error = math.sqrt(2 * 0.002**2 / 3)
    lower = scipy_stats.t.sf((-0.001 + margin) / error, 4)  # H0: difference <= -margin; t = 0.612
    upper = scipy_stats.t.cdf((-0.001 - margin) / error, 4)  # H0: difference >= +margin; t = -1.837
    assert (lower, upper) == pytest.approx((0.2867, 0.0700), abs=5e-5)
    assert statistics.equivalence(first, second, margin) == pytest.approx(max(lower, upper), rel=1e-9)


@pytest.mark.parametrize(
    ("standardized", "seeds"),
    # Cohen (1988), Statistical Power Analysis, table 2.4.1: two-sided alpha 0.05, power 0.80, n per group.
    [(0.5, 64), (0.8, 26), (1.0, 17)],
)
def test_seeds_to_detect_match_cohens_table(standardized, seeds):
    assert statistics.seeds_to_detect(0.002 * standardized, 0.002, 0.05, "two-sided") == seeds


def test_seeds_to_detect_nothing_or_too_much():
    assert statistics.seeds_to_detect(0.0, 0.002, 0.05, "two-sided") is None
    assert statistics.seeds_to_detect(0.001, 0.0, 0.05, "two-sided") is None
    assert statistics.seeds_to_detect(0.00001, 0.002, 0.05, "two-sided") == statistics.MOST_SEEDS + 1


def one_sided_power(standardized: float, seeds: int, alpha: float) -> float:
    """The power of a one-sided two-sample t-test, from scipy's noncentral t (not statsmodels, which the code
    uses): df = 2n - 2, noncentrality = effect x sqrt(n / 2)."""
    df = 2 * seeds - 2
    return float(scipy_stats.nct.sf(scipy_stats.t.ppf(1 - alpha, df), df, standardized * math.sqrt(seeds / 2)))


def test_seeds_to_decide_take_the_nearer_verdict():
    # Standardized difference 1 (difference 0.002, both sds 0.002), one pair: 17 seeds show it different
    # (Cohen's table); equivalence within 0.002 is out of reach (the difference is the margin).
    first, second = [0.988, 0.990, 0.992], [0.986, 0.988, 0.990]
    assert statistics.seeds_to_decide(first, second, 0.002, 1) == {"seeds": 17, "verdict": "different",
                                                                   "more_than": False}  # fmt: skip
    # No difference, sd 0.002, margin 0.004, ten pairs: TOST at 0.05 / 10 needs both one-sided tests of
    # effect 0.004 / 0.002 = 2 to reject, power 2 P - 1 with P the one-sided power.
    tied = [0.986, 0.988, 0.990]
    decided = statistics.seeds_to_decide(tied, list(tied), 0.004, 10)
    assert decided["verdict"] == "equivalent"
    seeds = decided["seeds"]
    assert 2 * one_sided_power(2.0, seeds, 0.005) - 1 >= 0.8 > 2 * one_sided_power(2.0, seeds - 1, 0.005) - 1
    # Chow, Shao and Wang's normal approximation for TOST at a zero difference, n = 2 (z_alpha + z_beta/2)^2
    # (sd / margin)^2 = 2 (2.5758 + 1.2816)^2 / 4 = 7.44: the t test needs a little more, never less.
    assert 8 <= seeds <= 10


def test_a_pair_that_two_seeds_already_decide_asks_for_two_not_a_crash():
    # Effect 100 sds: a power solver returns NaN here (the power is already 1 at two seeds).
    assert statistics.seeds_to_detect(0.01, 0.0001, 0.005, "two-sided") == 2


def test_a_difference_inside_the_margin_shown_both_ways_is_called_different():
    # 0.001 apart with sds of 0.0001: Welch rejects equality and TOST rejects a difference beyond 0.002.
    first = [0.9910, 0.9911, 0.9912, 0.9911, 0.9910]
    second = [value - 0.001 for value in first[::-1]]
    result = verdicts({"a": first, "b": second})[("a", "b")]
    assert result["p_holm"] < 0.05 and result["p_equivalence_holm"] < 0.05
    assert result["verdict"] == "different"


def verdicts(samples: dict, margin: float = 0.002) -> dict:
    pairs = [(first, second) for index, first in enumerate(samples) for second in list(samples)[index + 1 :]]
    return {(result["first"], result["second"]): result for result in statistics.compare_pairs(samples, pairs, margin)}


def test_three_verdicts_different_equivalent_undecided():
    base = [0.9910, 0.9915, 0.9920, 0.9912, 0.9918]
    results = verdicts({
        "base": base,
        "worse": [value - 0.0100 for value in base[::-1]],
        "twin": [value + 0.0001 for value in base[1:] + base[:1]],
        "noisy": [0.9850, 0.9990, 0.9900, 0.9960, 0.9880],
    })  # fmt: skip
    assert results[("base", "worse")]["verdict"] == "different"
    assert statistics.verdict_words(results[("base", "worse")], 0.002) == "base > worse"
    assert results[("base", "twin")]["verdict"] == "equivalent"
    assert statistics.verdict_words(results[("base", "twin")], 0.002) == "equivalent within ±0.0020"
    noisy = results[("base", "noisy")]
    assert noisy["verdict"] == "undecided" and noisy["to_decide"]["seeds"] > 5
    assert statistics.verdict_words(noisy, 0.002).startswith(f"undecided: about {noisy['to_decide']['seeds']} seeds")
    # worse against the noisy model: 0.0101 apart, but the noisy one's sd is 0.0057 (p about 0.02 before Holm).
    assert [results[pair]["verdict"] for pair in [("worse", "twin"), ("worse", "noisy"), ("twin", "noisy")]] == [
        "different", "undecided", "undecided"]  # fmt: skip
    assert statistics.count_verdicts(list(results.values())) == {"different": 2, "equivalent": 1, "undecided": 3}


def test_verdicts_are_holm_corrected_across_the_pairs():
    samples = {"a": [0.990, 0.991, 0.992], "b": [0.980, 0.981, 0.982], "c": [0.9895, 0.9915, 0.9925]}
    results = verdicts(samples)
    raw = [results[pair]["p_value"] for pair in results]
    # Holm by hand for three p-values: sorted ascending, times 3, 2, 1, running maximum, capped at 1.
    order = sorted(range(3), key=lambda index: raw[index])
    expected, running = [0.0] * 3, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[index]))
        expected[index] = running
    assert [results[pair]["p_holm"] for pair in results] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("first", "second", "words"),
    [
        # No spread on either side, unequal means: Welch would divide by zero and call it certain.
        ([0.99, 0.99], [0.98, 0.98], "undecided: no spread between seeds to test with"),
        ([0.99, 0.99, 0.99], [0.99, 0.99, 0.99], "undecided: no spread between seeds to test with"),
        ([0.99], [0.98, 0.97], "undecided: needs two seeds or more on each side"),
    ],
)
def test_degenerate_samples_are_undecided_never_significant(first, second, words):
    result = verdicts({"a": first, "b": second})[("a", "b")]
    assert result["verdict"] == "undecided" and result["p_value"] is None and result["p_equivalence"] is None
    assert statistics.verdict_words(result, 0.002) == words


def test_one_side_without_spread_is_still_tested():
    # Welch with one variance zero: t = difference / (s2 / sqrt(n2)), df = n2 - 1.
    result = statistics.welch([0.990, 0.990, 0.990], [0.980, 0.982, 0.984])
    t = 0.008 / (0.002 / math.sqrt(3))
    assert result["p_value"] == pytest.approx(2 * scipy_stats.t.sf(t, 2), rel=1e-9)
