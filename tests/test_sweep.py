"""tools/sweep.py: a sweep's experiments against their baseline, from `dvc exp show --json`'s layout."""

import pytest
from scipy import stats

from stages.errors import DataError
from tools import sweep


def run_data(kernel: int, accuracies: list[float], parameters: int = 1000) -> dict:
    """One commit's or experiment's `data`, laid out the way `dvc exp show --json` prints it."""
    metrics = {
        f"metrics/evaluate/arch/seed-{seed}.json": {"data": {"test": {"accuracy": accuracy, "loss": 0.1}}}
        for seed, accuracy in enumerate(accuracies, start=1)
    }
    metrics["metrics/train/arch/seed-1/metrics.json"] = {"data": {"parameters": parameters}}
    metrics["metrics/evaluate/conv3_pool/seed-1.json"] = {"data": {"test": {"accuracy": 0.5, "loss": 1.0}}}
    return {"params": {"params.yaml": {"data": {"arch": {"kernel": kernel}}}}, "metrics": metrics}


def shown(baseline: dict, *experiments: tuple[str, dict]) -> list[dict]:
    return [
        {"rev": "workspace", "data": run_data(7, [0.1, 0.1, 0.1]), "experiments": None},
        {
            "rev": "0123456789abcdef",
            "data": baseline,
            "experiments": [
                {"name": name, "revs": [{"rev": "fedcba9876543210", "name": name, "data": data}]}
                for name, data in experiments
            ],
        },
    ]


def test_each_value_is_tested_against_the_baseline_with_the_comparisons_three_verdicts():
    baseline = [0.990, 0.992, 0.991]
    same = list(baseline)
    lower = [0.980, 0.983, 0.981]
    value, points = sweep.collect(
        shown(run_data(3, baseline), ("kernel-5", run_data(5, same, 2000)), ("kernel-2", run_data(2, lower))),
        "arch.kernel",
        "arch",
    )
    assert value == 3 and sorted(points) == [2, 3, 5]  # the workspace's kernel 7 is not a recorded point
    assert points[5] == {"accuracies": {1: 0.990, 2: 0.992, 3: 0.991}, "parameters": 2000, "name": "kernel-5"}
    rows = {row["value"]: row for row in sweep.against_baseline({"arch": (value, points)}, 0.004)}
    assert rows[3]["test"] is None
    assert rows[5]["test"]["difference"] == 0 and rows[5]["test"]["p_value"] == pytest.approx(1.0)
    # Welch by hand: means 0.981333 and 0.991, variances 2.3333e-6 and 1.0e-6, so the standard error is
    # sqrt(2.3333e-6 / 3 + 1.0e-6 / 3) = 1.05409e-3, t = -9.17060, and Welch-Satterthwaite's degrees of
    # freedom (1.1111e-6)^2 / ((7.7778e-7)^2 / 2 + (3.3333e-7)^2 / 2) = 3.44828; p is the t distribution's
    # two tails there.
    expected = 2 * stats.t.sf(9.17060, 3.44828)
    assert rows[2]["test"]["p_value"] == pytest.approx(expected, rel=1e-4)
    # The smaller of two p-values, times 2 (Holm across the sweep's values).
    assert rows[2]["test"]["p_holm"] == pytest.approx(min(1.0, 2 * expected), rel=1e-4)
    # Identical samples, margin 0.004: TOST by hand, t = 0.004 / sqrt(2 x 1e-6 / 3) = 4.899 on 4 degrees of freedom.
    tost = stats.t.sf(0.004 / (2e-6 / 3) ** 0.5, 4)
    assert rows[5]["test"]["p_equivalence"] == pytest.approx(tost, rel=1e-6)
    table = sweep.markdown("arch.kernel", list(rows.values()), 0.004)
    assert "| arch | 3 | baseline 0123456 | 1,000 | 3 | 0.9910 ± 0.0010 |" in table
    assert f"| {min(1.0, 2 * expected):.3g} | " in table and "| 3 > 2 |" in table  # values named as in column 1
    assert "equivalent within ±0.0040" in table
    assert "equivalence margin ±0.0040, Holm across the 2 tests: 1 different, 1 equivalent, 0 undecided." in table


def test_one_seed_is_reported_without_a_test():
    value, points = sweep.collect(shown(run_data(3, [0.99]), ("k5", run_data(5, [0.98]))), "arch.kernel", "arch")
    table = sweep.markdown("arch.kernel", sweep.against_baseline({"arch": (value, points)}, 0.002), 0.002)
    assert (
        "| arch | 5 | k5 | 1,000 | 1 | 0.9800 |" in table and "undecided: needs two seeds or more on each side" in table
    )


def test_a_list_valued_parameter_is_one_point_per_list():
    layers = [{"type": "conv", "filters": 8}, {"type": "flatten"}]
    data = run_data(3, [0.99, 0.98])
    data["params"]["params.yaml"]["data"]["arch"]["layers"] = layers
    value, points = sweep.collect(shown(data), "arch.layers", "arch")
    assert value == '[{"type": "conv", "filters": 8}, {"type": "flatten"}]' and list(points) == [value]


def test_two_experiments_with_one_value_and_a_missing_baseline_are_refused():
    with pytest.raises(DataError, match=r"experiments 'a' and 'b' both have arch\.kernel=5; expected one"):
        sweep.collect(shown(run_data(3, [0.9]), ("a", run_data(5, [0.9])), ("b", run_data(5, [0.8]))),
                      "arch.kernel", "arch")  # fmt: skip
    with pytest.raises(DataError, match="no commit holds conv7_pool's test metrics"):
        sweep.collect(shown(run_data(3, [0.9])), "arch.kernel", "conv7_pool")


def test_several_models_are_each_tested_against_their_own_baseline_with_holm_across_all(tmp_path):
    def data(kernel, arch, conv3_pool):
        found = run_data(kernel, arch)
        for seed, accuracy in enumerate(conv3_pool, start=1):
            found["metrics"][f"metrics/evaluate/conv3_pool/seed-{seed}.json"] = {
                "data": {"test": {"accuracy": accuracy}}
            }
        return found

    shown_data = shown(
        data(3, [0.990, 0.992, 0.991], [0.980, 0.982, 0.981]),
        ("k5", data(5, [0.980, 0.983, 0.981], [0.980, 0.982, 0.981])),
        ("other", data(4, [0.5, 0.5], [0.5, 0.5])),
    )
    sweeps = {model: sweep.collect(shown_data, "arch.kernel", model, ["k5"]) for model in ("arch", "conv3_pool")}
    assert sorted(sweeps["arch"][1]) == [3, 5]  # the experiment not named is left out
    rows = sweep.against_baseline(sweeps, 0.004)
    tested = [row for row in rows if row["test"] is not None]
    assert [(row["model"], row["value"]) for row in tested] == [("arch", 5), ("conv3_pool", 5)]
    # Holm across both models' tests: arch's p (the smaller) doubled, conv3_pool's (identical data, p = 1) kept.
    assert tested[0]["test"]["p_holm"] == pytest.approx(2 * tested[0]["test"]["p_value"])
    assert tested[1]["test"]["p_holm"] == pytest.approx(1.0)
    assert "| conv3_pool | 5 | k5 |" in sweep.markdown("arch.kernel", rows, 0.004)
