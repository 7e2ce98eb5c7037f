"""The statistics of a comparison over seeds: summaries, intervals, and a verdict per pair that decides.

Every pair of models gets one of three verdicts, each Holm-corrected across the family of pairs:
  different   Welch's t-test: the means differ (p < 0.05 after Holm);
  equivalent  two one-sided Welch tests (TOST): the difference lies within +-margin (p < 0.05 after Holm);
  undecided   neither, with the seeds per model that would most likely decide the pair: a power
              calculation (80%) at the observed difference and spread, for whichever verdict is nearer.
Degenerate samples (one seed, or no spread on either side) are undecided: with no measured spread
there is no evidence either way, and a test that divides by zero spread would call any difference
certain.

The libraries do the arithmetic: scipy for Student's t and Welch's test, statsmodels for TOST,
Holm and power; tests/test_statistics.py checks them against textbook values and hand formulas.
"""

import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
SIGNIFICANCE = 0.05
POWER = 0.8
# Above this many seeds per model, "seeds that would decide" is reported as more than it.
MOST_SEEDS = 1000
VERDICTS = ("different", "equivalent", "undecided")


def summarize(values: list[float]) -> dict:
    """Count, mean, sample standard deviation (None for one value), minimum and maximum."""
    array = np.asarray(values, dtype=np.float64)
    return {
        "n": len(array),
        "mean": float(array.mean()),
        "sd": float(array.std(ddof=1)) if len(array) > 1 else None,
        "min": float(array.min()),
        "max": float(array.max()),
    }


def mean_sd_cell(summary: dict, digits: int = 4) -> str:
    """'0.9918 ± 0.0019' (the ± part left out for a single value)."""
    return f"{summary['mean']:.{digits}f}" + ("" if summary["sd"] is None else f" ± {summary['sd']:.{digits}f}")


def mean_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The `confidence` interval of the mean (Student's t); None for fewer than two values or no spread (an
    interval of zero width would claim certainty from no evidence)."""
    if len(values) < 2 or not spread(values):
        return None
    mean, error = float(np.mean(values)), float(stats.sem(values))
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=error)
    return (float(low), float(high))


def prediction_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Where one more run would fall with probability `confidence`: mean +- t(n-1) s sqrt(1 + 1/n).

    The yardstick for a single published run (the study's), which varies as one run does, not as
    a mean of n. None for fewer than two values or no spread: no interval can be claimed from them.
    """
    if len(values) < 2 or not spread(values):
        return None
    count, mean, sd = len(values), float(np.mean(values)), float(np.std(values, ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, count - 1)) * sd * math.sqrt(1 + 1 / count)
    return (mean - half, mean + half)


def spread(values: list[float]) -> bool:
    """Whether the values differ at all. Compared exactly: the variance of equal floats can come out as
    1e-34 instead of 0, and a test dividing by it would call any difference certain."""
    return max(values) != min(values)


def has_spread(first: list[float], second: list[float]) -> bool:
    """Two or more seeds on each side and some spread on at least one: what any test here needs."""
    return min(len(first), len(second)) >= 2 and (spread(first) or spread(second))


def welch(first: list[float], second: list[float], confidence: float = CONFIDENCE) -> dict:
    """Welch's t-test of mean(first) - mean(second): the difference, its interval and the two-sided p-value.

    Without spread on either side (or one seed) nothing can be tested: interval and p are None.
    """
    difference = float(np.mean(first) - np.mean(second))
    if not has_spread(first, second):
        return {"difference": difference, "interval": None, "p_value": None}
    result = stats.ttest_ind(first, second, equal_var=False)
    interval = result.confidence_interval(confidence)
    return {
        "difference": difference,
        "interval": (float(interval.low), float(interval.high)),
        "p_value": float(result.pvalue),
    }


def equivalence(first: list[float], second: list[float], margin: float) -> float | None:
    """The TOST p-value that mean(first) - mean(second) lies within (-margin, +margin), with Welch's variances.

    The larger of the two one-sided p-values; None when nothing can be tested (see `welch`).
    """
    if not has_spread(first, second):
        return None
    from statsmodels.stats.weightstats import ttost_ind

    p_value, _, _ = ttost_ind(np.asarray(first), np.asarray(second), -margin, margin, usevar="unequal")
    return float(p_value)


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment across the p-values given; a None (no test) stays None and is not counted."""
    from statsmodels.stats.multitest import multipletests

    tested = [index for index, value in enumerate(p_values) if value is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    if tested:
        corrected = multipletests([p_values[index] for index in tested], method="holm")[1]
        for index, value in zip(tested, corrected, strict=True):
            adjusted[index] = float(value)
    return adjusted


def _seeds_for(power_at, most: int = MOST_SEEDS) -> int:
    """The fewest seeds per model (2 or more) at which `power_at(seeds)` reaches POWER; MOST_SEEDS + 1 beyond.

    A search over whole numbers instead of a solver: power only grows with seeds, and a solver fails
    (NaN) exactly where 2 seeds already suffice. statsmodels' noncentral t returns NaN where the
    power is 1 to machine precision (a huge noncentrality), so NaN counts as reached.
    """

    def reached(seeds: int) -> bool:
        return not power_at(seeds) < POWER  # NaN: reached

    if not reached(most):
        return most + 1
    low, high = 2, most
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if reached(middle) else (middle + 1, high)
    return low


def seeds_to_detect(effect: float, sd: float, alpha: float, alternative: str) -> int | None:
    """Seeds per model for 80% power to detect `effect` against a spread `sd` (a two-sample t-test).

    None where no number of seeds would (no effect, or no spread to scale it by); MOST_SEEDS + 1
    where more than MOST_SEEDS would.
    """
    if effect <= 0 or sd <= 0:
        return None
    from statsmodels.stats.power import TTestIndPower

    standardized = effect / sd
    return _seeds_for(lambda seeds: TTestIndPower().power(standardized, seeds, alpha, alternative=alternative))


def seeds_to_show_equivalence(difference: float, sd: float, margin: float, alpha: float) -> int | None:
    """Seeds per model for 80% power of two one-sided tests within +-margin, at a true difference `difference`.

    TOST decides only when both one-sided tests reject; the power of both is at least the sum of
    the two powers minus 1 (Bonferroni's inequality), the usual bound for planning TOST. None where
    the difference is not inside the margin.
    """
    difference = abs(difference)
    if difference >= margin or sd <= 0:
        return None
    from statsmodels.stats.power import TTestIndPower

    def both(seeds: int) -> float:
        power = TTestIndPower().power
        return (
            power((margin - difference) / sd, seeds, alpha, alternative="larger")
            + power((margin + difference) / sd, seeds, alpha, alternative="larger")
            - 1
        )

    return _seeds_for(both)


def seeds_to_decide(first: list[float], second: list[float], margin: float, pair_count: int) -> dict | None:
    """For an undecided pair: the seeds per model that would most likely decide it, and which way.

    At the observed difference and pooled spread, 80% power at the Bonferroni level 0.05 / pairs
    (Holm's first step, so enough for Holm): to show a difference, a two-sided Welch test; to show
    equivalence, both one-sided tests of TOST. The smaller count wins. None without a measured spread.
    """
    if not has_spread(first, second):
        return None
    difference = float(np.mean(first) - np.mean(second))
    pooled = math.sqrt((float(np.var(first, ddof=1)) + float(np.var(second, ddof=1))) / 2)
    alpha = SIGNIFICANCE / max(pair_count, 1)
    candidates = [
        (seeds, verdict)
        for seeds, verdict in (
            (seeds_to_detect(abs(difference), pooled, alpha, "two-sided"), "different"),
            (seeds_to_show_equivalence(difference, pooled, margin, alpha), "equivalent"),
        )
        if seeds is not None
    ]
    if not candidates:
        return None
    seeds, verdict = min(candidates)
    return {"seeds": seeds, "verdict": verdict, "more_than": seeds > MOST_SEEDS}


def decide(p_different: float | None, p_equivalent: float | None) -> str:
    """The verdict from the two Holm-adjusted p-values (a pair can be both: a real difference inside the margin)."""
    if p_different is not None and p_different < SIGNIFICANCE:
        return "different"
    if p_equivalent is not None and p_equivalent < SIGNIFICANCE:
        return "equivalent"
    return "undecided"


def compare_pairs(samples: dict[str, list[float]], pairs: list[tuple[str, str]], margin: float) -> list[dict]:
    """Each pair (first, second): Welch and TOST, both Holm-adjusted across `pairs`, the verdict, and for an
    undecided pair the seeds that would decide it."""
    results = []
    for first, second in pairs:
        test = welch(samples[first], samples[second])
        results.append(
            {
                "first": first,
                "second": second,
                "seeds": [len(samples[first]), len(samples[second])],
                "difference": test["difference"],
                "interval": None if test["interval"] is None else list(test["interval"]),
                "p_value": test["p_value"],
                "p_equivalence": equivalence(samples[first], samples[second], margin),
            }
        )
    for result, p_holm, p_equivalence_holm in zip(
        results,
        holm([result["p_value"] for result in results]),
        holm([result["p_equivalence"] for result in results]),
        strict=True,
    ):
        result["p_holm"] = p_holm
        result["p_equivalence_holm"] = p_equivalence_holm
        result["verdict"] = decide(p_holm, p_equivalence_holm)
        result["to_decide"] = (
            seeds_to_decide(samples[result["first"]], samples[result["second"]], margin, len(results))
            if result["verdict"] == "undecided"
            else None
        )
    return results


def verdict_words(result: dict, margin: float) -> str:
    """The verdict in words, e.g. 'arch > conv3_pool', 'equivalent within ±0.0020', 'undecided: 9 seeds would tell'."""
    if result["verdict"] == "different":
        better, worse = (
            (result["first"], result["second"]) if result["difference"] > 0 else (result["second"], result["first"])
        )
        return f"{better} > {worse}"
    if result["verdict"] == "equivalent":
        return f"equivalent within ±{margin:.4f}"
    to_decide = result["to_decide"]
    if to_decide is None:
        if min(result["seeds"]) < 2:
            return "undecided: needs two seeds or more on each side"
        return "undecided: no spread between seeds to test with"
    if to_decide["more_than"]:
        return f"undecided: more than {MOST_SEEDS} seeds per model would be needed"
    return f"undecided: about {to_decide['seeds']} seeds per model would likely show it {to_decide['verdict']}"


def count_verdicts(results: list[dict]) -> dict[str, int]:
    return {verdict: sum(result["verdict"] == verdict for result in results) for verdict in VERDICTS}
