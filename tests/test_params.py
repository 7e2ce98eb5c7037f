import pytest

from stages import params


def test_invalid_yaml_points_at_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 10\n  batch_size: [200\n")
    with pytest.raises(params.ParamsError, match=r"not valid YAML at line \d+, column \d+"):
        params.load_params(path)


def test_misspelled_key_suggests_the_close_match():
    section = {"epochs": 1, "batch_size": 2, "optimizer": "adam", "learning_rat": 0.1, "seed": 0}
    with pytest.raises(params.ParamsError, match=r"unknown key 'train.learning_rat' \(did you mean 'learning_rate'"):
        params.TrainParams.from_section(section)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("epochs", "ten", r"'train.epochs' must be int, got 'ten'"),
        ("epochs", 0, r"'train.epochs' must be in \[1, inf\], got 0"),
        ("batch_size", -5, r"'train.batch_size' must be in \[1, inf\], got -5"),
        ("learning_rate", 0, r"'train.learning_rate' must be in \(0, inf\), got 0"),
        ("optimizer", "sgd", r"'train.optimizer' must be one of adam, got 'sgd'"),
        ("seed", True, r"'train.seed' must be int, got True"),
    ],
)
def test_wrong_train_values_name_key_value_and_expectation(key, value, message):
    section = {"epochs": 1, "batch_size": 2, "optimizer": "adam", "learning_rate": 0.1, "seed": 0} | {key: value}
    with pytest.raises(params.ParamsError, match=message):
        params.TrainParams.from_section(section)


def test_missing_section_is_named():
    with pytest.raises(params.ParamsError, match=r"missing key 'architectures.conv3_poo'.*did you mean 'conv3_pool'"):
        params.select({"architectures": {"conv3_pool": {}}}, "architectures.conv3_poo")


def test_the_projects_params_are_valid():
    loaded = params.load_params()
    settings = params.TrainParams.from_section(loaded["train"])
    assert (settings.epochs, settings.batch_size, settings.optimizer) == (10, 200, "adam")
