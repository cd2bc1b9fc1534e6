"""serving/loading.py `load_and_check`: the one load-and-predict-the-example check."""

import pandas as pd
import pytest

from serving.loading import ModelCheckFailed, load_and_check
from serving.validate import main as validate_main

EXAMPLE = pd.DataFrame({"annual_income": [1.0, 2.0], "term": ["36 months", "60 months"]})


def save_model(path, behaviour: str, input_example=EXAMPLE, contract=None) -> str:
    """A tiny pyfunc model in `path` that answers, raises or miscounts on predict."""
    import mlflow

    class TinyModel(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            if behaviour == "raise":
                raise RuntimeError("the model's own bug\nsecond line")
            rows = len(model_input) - (behaviour == "miscount")
            return pd.DataFrame({"probability": [0.5] * rows})

    mlflow.pyfunc.save_model(
        path,
        python_model=TinyModel(),
        input_example=input_example,
        pip_requirements=[],
        metadata={"input_contract": contract} if contract is not None else None,
    )
    return str(path)


def contract(term_categories=("36 months", "60 months"), **income) -> dict:
    return {
        "version": 1,
        "columns": [
            {"name": "annual_income", "type": "double", "nullable": False, **income},
            {"name": "term", "type": "string", "nullable": False,
             "categories": list(term_categories)},
        ],
    }  # fmt: skip


def test_a_model_with_a_contract_its_example_meets_loads(tmp_path):
    model, _ = load_and_check(save_model(tmp_path / "ok", "answer", contract=contract()))
    assert model.metadata.metadata["input_contract"]["columns"][1]["name"] == "term"


@pytest.mark.parametrize(
    ("document", "stage", "reason"),
    [
        (contract(minimum=1.5), "predict",
         "its input example breaks its own input contract (out_of_range, annual_income)"),
        (contract(term_categories=["36 months"]), "predict",
         "its input example breaks its own input contract (unknown_category, term)"),
        ({"columns": "nope"}, "load",
         "its input contract cannot be enforced: the contract must be an object with a list "
         "of columns"),
    ],
    ids=["example-out-of-range", "example-unknown-category", "malformed"],
)  # fmt: skip
def test_a_contract_that_does_not_fit_the_model_is_refused(tmp_path, document, stage, reason):
    path = save_model(tmp_path / "bad", "answer", contract=document)
    with pytest.raises(ModelCheckFailed) as failed:
        load_and_check(path)
    assert (failed.value.stage, failed.value.reason) == (stage, reason)


def test_a_good_model_loads_and_predicts(tmp_path):
    model, seconds = load_and_check(save_model(tmp_path / "good", "answer"))
    assert seconds > 0
    assert len(model.predict(EXAMPLE)) == 2


@pytest.mark.parametrize(
    ("behaviour", "input_example", "stage", "reason"),
    [
        ("raise", EXAMPLE, "predict", "RuntimeError: the model's own bug"),
        ("miscount", EXAMPLE, "predict", "1 predictions for 2 example rows"),
        ("answer", None, "predict", "it has no input example to check it with"),
    ],
    ids=["raises", "miscounts", "no-example"],
)
def test_a_model_failing_its_example_is_refused(tmp_path, behaviour, input_example, stage, reason):
    path = save_model(tmp_path / behaviour, behaviour, input_example)
    with pytest.raises(ModelCheckFailed) as failed:
        load_and_check(path)
    assert (failed.value.stage, failed.value.reason) == (stage, reason)
    assert str(failed.value) == f"the model fails on its own input example: {reason}"


def test_a_missing_model_does_not_load(tmp_path):
    with pytest.raises(ModelCheckFailed) as failed:
        load_and_check(str(tmp_path / "nothing-here"))
    assert failed.value.stage == "load"
    assert str(failed.value).startswith("the model does not load: ")
    assert "\n" not in failed.value.reason


def test_validate_cli_prints_one_line(tmp_path, capsys):
    assert validate_main([save_model(tmp_path / "good", "answer")]) == 0
    assert '"ok": true, "rows": 2' in capsys.readouterr().out
    assert validate_main([save_model(tmp_path / "bad", "raise")]) == 1
    out = capsys.readouterr().out
    assert (
        out == "model check failed: the model fails on its own input example: "
        "RuntimeError: the model's own bug\n"
    )
