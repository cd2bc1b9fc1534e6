import pytest
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from training.promote import Evaluation, column_problems, decide


def evaluation(**overrides) -> Evaluation:
    values = {"loads": True, "predicts_example": True, "candidate_auc": 0.80, "champion_auc": 0.78}
    return Evaluation(**(values | overrides))


@pytest.mark.parametrize(
    ("case", "has_champion", "skip_metric", "promote", "reason"),
    [
        (evaluation(loads=False, failure="boom"), True, False, False, "does not load"),
        (evaluation(loads=False), False, True, False, "does not load"),
        (evaluation(predicts_example=False), True, True, False, "input example"),
        (evaluation(column_problems=["column 'x' is missing"]), True, True, False, "incompatible"),
        (evaluation(), True, False, True, "beats"),
        (evaluation(candidate_auc=0.781), True, False, False, "does not beat"),
        (evaluation(candidate_auc=0.70), True, True, True, "skipped"),
        (evaluation(champion_auc=None), False, False, True, "floor"),
        (evaluation(candidate_auc=0.60, champion_auc=None), False, False, False, "below"),
        (evaluation(candidate_auc=None), True, False, False, "cannot be evaluated"),
        (evaluation(champion_auc=None), True, False, False, "champion cannot be scored"),
    ],
)
def test_decision_table(case, has_champion, skip_metric, promote, reason):
    decision = decide(case, has_champion, margin=0.002, floor=0.65, skip_metric=skip_metric)
    assert decision.promote is promote
    assert reason in decision.reason


def signature(**columns) -> ModelSignature:
    return ModelSignature(inputs=Schema([ColSpec(kind, name) for name, kind in columns.items()]))


@pytest.mark.parametrize(
    ("champion", "candidate", "problems"),
    [
        (signature(a="double", b="string"), signature(a="double", b="string", c="long"), []),
        (signature(a="long"), signature(a="double"), []),
        (signature(a="double"), signature(a="long"), ["column 'a' was double, is long"]),
        (signature(a="double", b="string"), signature(a="double"), ["column 'b' is missing"]),
        (signature(b="string"), signature(b="double"), ["column 'b' was string, is double"]),
    ],
)
def test_column_compatibility(champion, candidate, problems):
    assert column_problems(champion, candidate) == problems
