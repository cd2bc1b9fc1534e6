"""Load a model and prove it predicts its own input example: the one implementation of that.

Three places need it and use this one: the serving worker at start (serving/app.py), the
separate checking process before a version is handed to gunicorn (serving/validate.py), and
promotion checks (a) and (b) (training/promote.py). A model that cannot do this is never
served and never promoted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from serving.contract import ContractError, InputContract, contract_of, example_problem
from serving.state import ServedModel

# What loading a model can raise that is not a bug here: a missing or unreadable artifact, a
# flavor or dependency that does not import, a broken MLmodel file.
_LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, ImportError, ValueError, TypeError)


class ModelCheckFailed(Exception):
    """The model does not load (`stage == "load"`) or fails on its input example ("predict").

    `reason` is one short line for a decision record or a log, `str()` says which stage failed.
    """

    STAGES = {"load": "does not load", "predict": "fails on its own input example"}

    def __init__(self, stage: str, reason: str):
        super().__init__(f"the model {self.STAGES[stage]}: {reason}")
        self.stage = stage
        self.reason = reason


def load_and_check(path_or_uri: str):
    """Load a pyfunc model and predict its input example; one prediction per example row.

    Args:
        path_or_uri: a local model directory or any URI mlflow.pyfunc.load_model takes.

    Returns:
        (the loaded PyFuncModel, seconds the load and the check took).

    Raises:
        ModelCheckFailed: with `stage` "load" or "predict" and a one-line reason.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    started = time.perf_counter()
    try:
        model = mlflow.pyfunc.load_model(path_or_uri)
    except (MlflowException, *_LOAD_ERRORS) as error:
        raise ModelCheckFailed("load", short_reason(error)) from error
    try:
        contract = contract_of(model.metadata.metadata)
    except ContractError as error:
        raise ModelCheckFailed("load", f"its input contract cannot be enforced: {error}") from None
    example = model.input_example
    if example is None:
        raise ModelCheckFailed("predict", "it has no input example to check it with")
    problem = example_problem(example, contract) if contract is not None else None
    if problem is not None:
        raise ModelCheckFailed(
            "predict",
            f"its input example breaks its own input contract ({problem.case}, {problem.column})",
        )
    try:
        prediction = model.predict(example)
    except Exception as error:  # noqa: BLE001 - any failure of a model's own code disqualifies it
        raise ModelCheckFailed("predict", short_reason(error)) from error
    if len(prediction) != len(example):
        raise ModelCheckFailed(
            "predict", f"{len(prediction)} predictions for {len(example)} example rows"
        )
    return model, time.perf_counter() - started


def short_reason(error: BaseException) -> str:
    """The error's type and the first line of its text, at most 300 characters."""
    lines = str(error).strip().splitlines()
    name = type(error).__name__
    return (f"{name}: {lines[0]}" if lines else name)[:300]


@dataclass
class LoadedModel:
    """A checked model in a worker, with what `GET /model` reports about it."""

    served: ServedModel
    pyfunc: object
    loaded_at: str
    load_seconds: float
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    # None for a model logged before input contracts: served with the older frame checks.
    contract: InputContract | None = None


def load(served: ServedModel) -> LoadedModel:
    """Load the checked local copy and predict its input example (readiness needs both)."""
    model, seconds = load_and_check(served.path)
    signature = model.metadata.signature
    return LoadedModel(
        served=served,
        pyfunc=model,
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_seconds=seconds,
        inputs=column_specs(signature.inputs) if signature else [],
        outputs=column_specs(signature.outputs) if signature else [],
        contract=contract_of(model.metadata.metadata),
    )


def column_specs(schema) -> list[dict]:
    """A signature schema's columns as `{"name", "type", "required"}` dicts."""
    return [
        {
            "name": spec.name,
            "type": getattr(spec.type, "name", str(spec.type)),
            "required": spec.required,
        }
        for spec in schema.inputs
    ]
