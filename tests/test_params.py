import pytest

from stages import params, train
from stages.errors import ParamsError
from tests.conftest import project_params

TRAIN_SECTION = {
    "epochs": 1,
    "batch_size": 2,
    "optimizer": "adam",
    "learning_rate": 0.1,
    "max_gflop_per_epoch": 10,
    "precision": "float32",
}


def test_invalid_yaml_points_at_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 10\n  batch_size: [200\n")
    with pytest.raises(ParamsError, match=r"not valid YAML at line \d+, column \d+"):
        params.load_params(path)


def test_misspelled_key_suggests_the_close_match():
    section = TRAIN_SECTION | {"learning_rat": 0.1}
    del section["learning_rate"]
    with pytest.raises(ParamsError, match=r"unknown key 'train.learning_rat' \(did you mean 'learning_rate'"):
        train.TrainParams.from_section(section)


def test_a_missing_key_inside_a_section_is_named_with_the_keys_expected():
    section = dict(TRAIN_SECTION)
    del section["learning_rate"]
    with pytest.raises(
        ParamsError,
        match=r"^params.yaml: missing key 'train.learning_rate'; expected keys: batch_size, epochs, learning_rate, "
        r"max_gflop_per_epoch, optimizer, precision, seeds$",
    ):
        train.TrainParams.from_section(section)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("epochs", "ten", r"'train.epochs' must be int, got 'ten'"),
        ("epochs", 0, r"'train.epochs' must be in \[1, inf\], got 0"),
        ("batch_size", -5, r"'train.batch_size' must be in \[1, inf\], got -5"),
        ("learning_rate", 0, r"'train.learning_rate' must be in \(0, inf\), got 0"),
        ("optimizer", "adamw", r"'train.optimizer' must be one of adam, sgd, rmsprop, got 'adamw' \(did you mean"),
        ("max_gflop_per_epoch", True, r"'train.max_gflop_per_epoch' must be int or float, got True"),
        (
            "precision",
            "bfloat16",
            r"'train.precision' must be one of float32, mixed_bfloat16, got 'bfloat16' \(did you "
            r"mean 'mixed_bfloat16'",
        ),
        ("precision", "float16", r"'train.precision' must be one of float32, mixed_bfloat16, got 'float16'"),
    ],
)
def test_wrong_train_values_name_key_value_and_expectation(key, value, message):
    with pytest.raises(ParamsError, match=message):
        train.TrainParams.from_section(TRAIN_SECTION | {key: value})


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ([], r"'train.seeds' is \[\]; expected a non-empty list of distinct non-negative integers"),
        (7, r"'train.seeds' is 7; expected a non-empty list"),
        ([1, 2, 1], r"'train.seeds' repeats 1 in \[1, 2, 1\]; expected"),
        ([1, -2], r"'train.seeds\[1\]' is -2; expected"),
        ([1, "x"], r"'train.seeds\[1\]' is 'x'; expected"),
        ([True], r"'train.seeds\[0\]' is True; expected"),
    ],
)
def test_bad_seed_lists_are_named(seeds, message):
    with pytest.raises(ParamsError, match=message):
        params.seed_list(seeds)


def test_missing_section_is_named():
    with pytest.raises(ParamsError, match=r"missing key 'conv3_poo'.*did you mean 'conv3_pool'"):
        params.select({"conv3_pool": {}}, "conv3_poo")


def test_the_projects_params_are_valid():
    loaded = project_params()
    settings = train.TrainParams.from_section(loaded["train"])
    assert (settings.epochs, settings.batch_size, settings.optimizer) == (10, 200, "adam")
    assert params.seed_list(loaded["train"]["seeds"]) == [1, 2, 3, 4, 5, 6]
    assert loaded["models"] == ["conv3_pool", "conv5_pool", "conv7_pool", "conv3_dropout", "arch"]
