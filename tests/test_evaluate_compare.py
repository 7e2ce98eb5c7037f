"""The evaluate stage's numbers and the comparison's statistics, checked against values computed independently."""

import math

import numpy as np
import pytest

from stages import architecture, compare, evaluate
from stages.errors import ParamsError
from tests.conftest import project_params


def test_sample_predictions_report_label_class_and_probability():
    probabilities = np.array([[0.1, 0.9], [0.7, 0.3]], dtype=np.float32)
    samples = evaluate.sample_predictions(probabilities, np.array([1, 1]), (1, 0), ["cat", "dog"])
    assert samples == [
        {"index": 1, "label": "dog", "predicted": "cat", "probability": pytest.approx(0.7)},
        {"index": 0, "label": "dog", "predicted": "dog", "probability": pytest.approx(0.9)},
    ]


def test_sample_index_past_the_test_set_is_named():
    with pytest.raises(ParamsError, match="index 2500 is past the 300 test images"):
        evaluate.sample_predictions(np.zeros((300, 10)), np.zeros(300, dtype=int), (2500,), list("0123456789"))


def test_confident_errors_are_the_wrong_predictions_most_confident_first_ties_by_index():
    probabilities = np.array(
        [
            [0.9, 0.1, 0.0],  # right
            [0.2, 0.8, 0.0],  # wrong, 0.8
            [0.05, 0.0, 0.95],  # wrong, 0.95
            [0.1, 0.1, 0.8],  # wrong, 0.8: ties with image 1, which comes first
            [0.6, 0.4, 0.0],  # wrong, 0.6
        ],
        dtype=np.float32,
    )
    true_classes = np.array([0, 0, 1, 1, 2])
    errors = evaluate.confident_errors(probabilities, true_classes, ["a", "b", "c"], count=3)
    assert [error["index"] for error in errors] == [2, 1, 3]
    assert errors[0] == {"index": 2, "label": "b", "predicted": "c", "probability": 0.95}
    assert evaluate.confident_errors(probabilities, true_classes, ["a", "b", "c"], count=0) == []
    assert len(evaluate.confident_errors(probabilities, true_classes, ["a", "b", "c"], count=10)) == 4


def test_confusion_csv_has_one_row_per_image():
    names = [str(digit) for digit in range(10)]
    assert evaluate.confusion_csv(np.array([3, 1]), np.array([3, 7]), names) == "actual,predicted\n3,3\n1,7\n"
    fashion = ["T-shirt/top", "Trouser, long"]
    assert (
        evaluate.confusion_csv(np.array([0]), np.array([1]), fashion)
        == 'actual,predicted\nT-shirt/top,"Trouser, long"\n'
    )


def test_one_pass_of_predictions_gives_what_keras_evaluate_gives():
    import keras

    generator = np.random.default_rng(0)
    images = generator.random((300, 28, 28, 1), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[generator.integers(0, 10, 300)]
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    expected_loss, expected_accuracy = model.evaluate(images, labels, batch_size=100, verbose=0)
    loss, accuracy = evaluate.loss_and_accuracy(labels, model.predict(images, batch_size=100, verbose=0))
    assert loss == pytest.approx(expected_loss, rel=1e-5) and accuracy == pytest.approx(expected_accuracy)


# --- statistics ---------------------------------------------------------------------------------


def test_identical_samples_differ_by_zero_with_p_one():
    runs = [0.9851, 0.9862, 0.9857]
    result = compare.welch(runs, list(runs))
    assert result["difference"] == 0 and result["p_value"] == pytest.approx(1.0)
    assert result["interval"][0] < 0 < result["interval"][1]
    constant = compare.welch([0.99, 0.99], [0.99, 0.99])
    assert constant == {"difference": 0.0, "interval": (0.0, 0.0), "p_value": 1.0}


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
    result = compare.welch(first, second)
    assert result["p_value"] == pytest.approx(p_value, abs=0.0005)
    # Welch's formula by hand: standard error, Welch-Satterthwaite degrees of freedom, two-sided t tail.
    from scipy import stats

    variances = [np.var(sample, ddof=1) / len(sample) for sample in (first, second)]
    error = math.sqrt(sum(variances))
    df = sum(variances) ** 2 / sum(variance**2 / (len(sample) - 1) for variance, sample in
                                   zip(variances, (first, second), strict=True))  # fmt: skip
    t = (np.mean(first) - np.mean(second)) / error
    assert t == pytest.approx(statistic, abs=0.005) and df == pytest.approx(degrees, abs=0.05)
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    half_width = stats.t.ppf(0.975, df) * error
    assert result["interval"] == pytest.approx((t * error - half_width, t * error + half_width), rel=1e-9)


def test_holm_matches_the_textbook_example():
    # Wikipedia, "Holm-Bonferroni method": p = 0.01, 0.04, 0.03, 0.005 at 0.05 rejects the first and the fourth.
    adjusted = compare.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]
    assert compare.holm([0.5, 0.9]) == [1.0, 1.0]


def test_mean_interval_is_students_t_interval():
    values = [0.985, 0.987, 0.989]
    # t(0.975, 2) = 4.303 from any t-table; s = 0.002.
    low, high = compare.mean_interval(values)
    assert (low, high) == pytest.approx((0.987 - 4.3027 * 0.002 / math.sqrt(3), 0.987 + 4.3027 * 0.002 / math.sqrt(3)))
    assert compare.mean_interval([0.98]) is None


def test_verdicts_name_the_better_model_or_say_it_cannot_tell():
    assert compare.verdict("a", "b", -0.004, 0.012, 3) == "b > a (p = 0.012)"
    assert compare.verdict("a", "b", 0.001, 0.4, 3) == "not distinguishable with 3 seeds (p = 0.4)"


SPEC = architecture.parse_architecture("conv3_pool", project_params()["conv3_pool"]).to_dict()


def run(test_accuracy: float, train_accuracy: float = 0.99) -> dict:
    return {"train_loss": 0.03, "val_loss": 0.05, "test_loss": 0.04, "train_accuracy": train_accuracy,
            "val_accuracy": 0.985, "test_accuracy": test_accuracy}  # fmt: skip


def test_model_summary_has_spread_interval_and_the_study_inside_or_outside():
    study = {"test_accuracy": 0.9863, "parameters": 87914} | {column: 0.5 for column in compare.METRIC_COLUMNS[:-1]}
    summary = compare.model_summary(SPEC, [run(0.985), run(0.987), run(0.989)], 87914, study)
    assert summary["architecture"] == "3 conv, 3 maxpool" and summary["kernel"] == "3x3"
    accuracy = summary["metrics"]["test_accuracy"]
    assert (accuracy["n"], accuracy["mean"], accuracy["min"], accuracy["max"]) == (
        3,
        pytest.approx(0.987),
        0.985,
        0.989,
    )
    assert accuracy["sd"] == pytest.approx(0.002)
    assert summary["study_test_accuracy_in_range"] is True and summary["study_test_accuracy_in_interval"] is True
    outside = compare.model_summary(SPEC, [run(0.990), run(0.991)], 87914, study)
    assert outside["study_test_accuracy_in_range"] is False


def test_a_single_seed_gives_no_spread_and_no_pairs():
    models = {name: compare.model_summary(SPEC, [run(0.98)], 1, None) for name in ("a", "b")}
    assert models["a"]["metrics"]["test_accuracy"]["sd"] is None and models["a"]["test_accuracy_interval"] is None
    assert compare.pairwise(models) == []
    assert compare.narrow_summary(models) == {"test_accuracy": {"a": 0.98, "b": 0.98}}
    assert "| **a** | 3 conv, 3 maxpool | 3x3 | 1 | 0.0300 |" in compare.markdown_table(models, [])


def test_pairs_are_holm_corrected_and_tabled():
    models = {
        "low": compare.model_summary(SPEC, [run(0.980), run(0.981), run(0.982)], 1, None),
        "high": compare.model_summary(SPEC, [run(0.990), run(0.991), run(0.992)], 1, None),
        "same": compare.model_summary(SPEC, [run(0.980), run(0.981), run(0.982)], 1, None),
    }
    pairs = compare.pairwise(models)
    assert [(pair["first"], pair["second"]) for pair in pairs] == [("low", "high"), ("low", "same"), ("high", "same")]
    raw = [pair["p_value"] for pair in pairs]
    # Holm by hand for three p-values: the smallest times 3, the middle times 2 (never below the first), the
    # largest times 1 (never below the second), each capped at 1. Here low-vs-same is identical data (p = 1).
    smallest, middle = sorted(raw)[:2]
    assert raw[1] == pytest.approx(1.0)
    expected = {0: min(1.0, 3 * raw[0]), 2: max(min(1.0, 3 * smallest), min(1.0, 2 * middle)), 1: 1.0}
    assert smallest == raw[0] and middle == raw[2]  # the order the lines above assume
    assert [pair["p_holm"] for pair in pairs] == pytest.approx([expected[0], expected[1], expected[2]])
    assert pairs[0]["verdict"].startswith("high > low (p = ") and pairs[1]["verdict"].startswith("not distinguishable")
    table = compare.markdown_table(models, pairs)
    assert "| **low** | 3 conv, 3 maxpool | 3x3 | 3 | 0.0300 ± 0.0000 |" in table
    assert "| low | high | -0.0100 |" in table
    assert compare.narrow_summary(models)["test_accuracy_sd"] == {"low": 0.001, "high": 0.001, "same": 0.001}


def test_kernel_label_names_overrides():
    spec = architecture.parse_architecture("conv7_pool", project_params()["conv7_pool"]).to_dict()
    assert compare.kernel_label(spec) == "2x2, 5x5 in 2 of 7 convs"
