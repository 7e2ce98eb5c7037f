import numpy as np
import pytest

from stages import architecture, compare, evaluate, params


def test_sample_predictions_report_label_class_and_probability():
    probabilities = np.array([[0.1, 0.9], [0.7, 0.3]], dtype=np.float32)
    samples = evaluate.sample_predictions(probabilities, np.array([1, 1]), (1, 0), ["cat", "dog"])
    assert samples == [
        {"index": 1, "label": "dog", "predicted": "cat", "probability": pytest.approx(0.7)},
        {"index": 0, "label": "dog", "predicted": "dog", "probability": pytest.approx(0.9)},
    ]


def test_sample_index_past_the_test_set_is_named():
    with pytest.raises(ValueError, match="index 2500 is past the 300 test images"):
        evaluate.sample_predictions(np.zeros((300, 10)), np.zeros(300, dtype=int), (2500,), list("0123456789"))


def test_confusion_csv_has_one_row_per_image():
    names = [str(digit) for digit in range(10)]
    assert evaluate.confusion_csv(np.array([3, 1]), np.array([3, 7]), names) == "actual,predicted\n3,3\n1,7\n"
    fashion = ["T-shirt/top", "Trouser, long"]
    assert (
        evaluate.confusion_csv(np.array([0]), np.array([1]), fashion)
        == 'actual,predicted\nT-shirt/top,"Trouser, long"\n'
    )


def test_comparison_rows_carry_study_figures_and_differences():
    spec = architecture.parse_architecture("conv3_pool", params.load_params()["architectures"]["conv3_pool"])
    train_metrics = {
        "parameters": 87914,
        "train": {"loss": 0.03, "accuracy": 0.99},
        "eval": {"loss": 0.05, "accuracy": 0.985},
    }
    row = compare.model_row(spec, train_metrics, {"test": {"loss": 0.04, "accuracy": 0.9873}})
    assert row["architecture"] == "3 conv, 3 maxpool" and row["kernel"] == "3x3"
    assert row["difference"]["test_accuracy"] == pytest.approx(0.001)
    table = compare.markdown_table({"conv3_pool": row})
    assert (
        "| **conv3_pool** | 3 conv, 3 maxpool | 3x3 | 0.0300 | 0.0500 | 0.0400 | 0.9900 | 0.9850 | 0.9873 | "
        "87,914 |" in table
    )
    assert "| difference | | | +0.0002 | +0.0010 | -0.0068 | -0.0002 | -0.0008 | +0.0010 | |" in table
