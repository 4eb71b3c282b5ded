import pytest

from byoc_runtime.errors import HyperparameterError
from byoc_runtime.hyperparameters import Param, decode_all, decode_value, describe, validate

SPEC = {
    "epochs": Param(int, 10, min=1),
    "lr": Param(float, 0.1, min=0.0),
    "optimizer": Param(str, "sgd", choices=("sgd", "adam")),
    "layers": Param(list, [64, 32]),
    "hybridize": Param(bool, True),
    "feature_dim": Param(int),
}


@pytest.mark.parametrize(
    "raw, expected",
    [("0.1", 0.1), ('"adam"', "adam"), ("adam", "adam"), ("[1, 2]", [1, 2]), ("true", True), (5, 5), ("", "")],
)
def test_decode_value_accepts_old_and_json_encoded_forms(raw, expected):
    assert decode_value(raw) == expected


def test_validate_coerces_and_applies_defaults():
    hps = decode_all(
        {
            "epochs": "5.0",
            "lr": '"0.01"',
            "optimizer": '"adam"',
            "layers": "128,64",
            "feature_dim": "784",
            "hybridize": "False",
            "sagemaker_program": '"x.py"',
        }
    )
    assert validate(hps, SPEC) == {
        "epochs": 5,
        "lr": 0.01,
        "optimizer": "adam",
        "layers": [128, 64],
        "hybridize": False,
        "feature_dim": 784,
    }


@pytest.mark.parametrize(
    "given, name, problem",
    [
        ({"epochs": "abc", "feature_dim": 1}, "epochs", "expected an integer"),
        ({"epochs": "2.5", "feature_dim": 1}, "epochs", "expected an integer"),
        ({"epochs": "0", "feature_dim": 1}, "epochs", "below the minimum"),
        ({"lr": "nan", "feature_dim": 1}, "lr", "finite"),
        ({"optimizer": "rmsprop", "feature_dim": 1}, "optimizer", "not one of sgd, adam"),
        ({"layers": "a,b", "feature_dim": 1}, "layers", "list of numbers"),
        ({"hybridize": "maybe", "feature_dim": 1}, "hybridize", "true or false"),
        ({}, "feature_dim", "required"),
        ({"feature_dim": 1, "epoch": 3}, "epoch", "unknown hyperparameter"),
    ],
)
def test_invalid_values_name_the_hyperparameter(given, name, problem):
    with pytest.raises(HyperparameterError) as info:
        validate(decode_all({k: str(v) for k, v in given.items()}), SPEC)
    assert info.value.name == name
    assert str(info.value).startswith(f"Hyperparameter '{name}' is invalid")
    assert problem in str(info.value)


def test_unknown_allowed_when_asked():
    assert validate({"feature_dim": 3, "extra": "x"}, SPEC, allow_unknown=True)["extra"] == "x"


def test_describe_lists_every_parameter():
    table = describe(SPEC)
    assert all(f"| {name} |" in table for name in SPEC) and "(required)" in table
