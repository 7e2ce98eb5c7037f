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


# --- the comparison (its statistics: tests/test_statistics.py) ----------------------------------


SPEC = architecture.parse_architecture("conv3_pool", project_params()["conv3_pool"]).to_dict()


def run(test_accuracy: float, train_accuracy: float = 0.99) -> dict:
    return {"train_loss": 0.03, "val_loss": 0.05, "test_loss": 0.04, "train_accuracy": train_accuracy,
            "val_accuracy": 0.985, "test_accuracy": test_accuracy}  # fmt: skip


def test_model_summary_has_spread_intervals_and_the_study_inside_or_outside_the_prediction_interval():
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
    # Prediction interval by hand: 0.987 +- t(0.975, 2) x 0.002 x sqrt(1 + 1/3) = 0.987 +- 4.303 x 0.0023094.
    half = 4.303 * 0.002 * math.sqrt(4 / 3)
    assert summary["test_accuracy_prediction_interval"] == pytest.approx([0.987 - half, 0.987 + half], abs=1e-5)
    assert summary["study_test_accuracy_in_prediction_interval"] is True
    # 0.990, 0.991, 0.992 predict one run at 0.991 +- 4.303 x 0.001 x 1.1547 = 0.9860 to 0.9960: 0.9863 is
    # inside, though outside their range (the old yardstick) and their mean's interval (0.9885 to 0.9935).
    tight = compare.model_summary(SPEC, [run(0.990), run(0.991), run(0.992)], 87914, study)
    assert tight["study_test_accuracy_in_prediction_interval"] is True
    far = compare.model_summary(SPEC, [run(0.995), run(0.996), run(0.997)], 87914, study)
    assert far["study_test_accuracy_in_prediction_interval"] is False  # 0.9910 to 1.0010


def test_a_single_seed_gives_no_spread_and_undecided_pairs():
    models = {name: compare.model_summary(SPEC, [run(0.98)], 1, None) for name in ("a", "b")}
    assert models["a"]["metrics"]["test_accuracy"]["sd"] is None and models["a"]["test_accuracy_interval"] is None
    pairs = compare.pairwise(models, 0.002)
    assert [pair["verdict_words"] for pair in pairs] == ["undecided: needs two seeds or more on each side"]
    counts = {"different": 0, "equivalent": 0, "undecided": 1}
    assert compare.narrow_summary(models, pairs) == {"test_accuracy": {"a": 0.98, "b": 0.98}, "pairs": counts}
    assert "| **a** | 3 conv, 3 maxpool | 3x3 | 1 | 0.0300 |" in compare.markdown_table(models, pairs, 0.002)


def test_pairs_are_tabled_with_both_p_values_the_verdict_and_the_counts():
    models = {
        "low": compare.model_summary(SPEC, [run(0.980), run(0.981), run(0.982)], 1, None),
        "high": compare.model_summary(SPEC, [run(0.990), run(0.991), run(0.992)], 1, None),
        "same": compare.model_summary(SPEC, [run(0.9801), run(0.9811), run(0.9819)], 1, None),
    }
    pairs = compare.pairwise(models, 0.004)
    assert [(pair["first"], pair["second"]) for pair in pairs] == [("low", "high"), ("low", "same"), ("high", "same")]
    assert [pair["verdict_words"] for pair in pairs] == ["high > low", "equivalent within ±0.0040", "high > same"]
    table = compare.markdown_table(models, pairs, 0.004)
    assert "| **low** | 3 conv, 3 maxpool | 3x3 | 3 | 0.0300 ± 0.0000 |" in table
    assert "Verdicts: 2 different, 1 equivalent, 0 undecided." in table
    low_high = pairs[0]
    assert (
        f"| low | high | -0.0100 | {low_high['interval'][0]:+.4f} to {low_high['interval'][1]:+.4f} | "
        f"{low_high['p_holm']:.3g} | {low_high['p_equivalence_holm']:.3g} | high > low |"
    ) in table
    summary = compare.narrow_summary(models, pairs)
    assert summary["test_accuracy_sd"]["low"] == 0.001
    assert summary["pairs"] == {"different": 2, "equivalent": 1, "undecided": 0}


@pytest.mark.parametrize("margin", [0, -0.002, 1, "0.002"])
def test_an_equivalence_margin_outside_zero_to_one_is_refused(margin):
    with pytest.raises(ParamsError, match=r"'compare.equivalence_margin' must be"):
        compare.equivalence_margin(margin)


def test_kernel_label_names_overrides():
    spec = architecture.parse_architecture("conv7_pool", project_params()["conv7_pool"]).to_dict()
    assert compare.kernel_label(spec) == "2x2, 5x5 in 2 of 7 convs"


def test_the_new_layer_types_are_described_in_words():
    spec = architecture.parse_architecture("arch", {"kernel": 3, "layers": [
        {"type": "augment", "rotation": 8, "shift": 0.1}, {"type": "conv", "filters": 8}, {"type": "pool"},
        {"type": "dropout", "rate": 0.4}, {"type": "global_pool"}]}).to_dict()  # fmt: skip
    assert (
        compare.describe(spec)
        == "augment (rotation 8°, shift 0.1), 1 conv, 1 maxpool, dropout 0.4, global average pool"
    )
