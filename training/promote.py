"""Move `@champion` to a candidate version only when it is better and passes its checks.

    python -m training.promote                 # the newest version is the candidate
    python -m training.promote --candidate 7   # evaluate version 7
    python -m training.promote --version 4     # roll back / pin: checks (a)-(c), no metric test
    python -m training.promote --force         # skip the metric test, never the checks

Checks, in order: (a) the candidate loads through mlflow.pyfunc, (b) it predicts its own input
example, (c) it accepts every input column the champion accepts with a compatible type, and
(d) its ROC AUC on the candidate's held-out data beats the champion's on the same rows by
--margin (with no champion: reaches --floor). A candidate that was evaluated and not promoted
gets `@challenger`. The decision and both sets of metrics are written as tags on the version.

Exit status: 0 promoted (or already champion), 1 not promoted, 2 usage or registry error.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from serving.loading import ModelCheckFailed, load_and_check, short_reason
from training.evaluate import classification_metrics
from training.registry import (
    CHALLENGER,
    CHAMPION,
    DEFAULT_MODEL_NAME,
    CliError,
    cli_main,
    configure_client,
)
from training.train import EVALUATION_ARTIFACT

# Types a champion's column may have and the candidate types that accept the same values.
_COMPATIBLE_TYPES = {
    "double": {"double", "float"},
    "float": {"double", "float"},
    "long": {"long", "double", "float"},
    "integer": {"integer", "long", "double", "float"},
    "string": {"string"},
    "boolean": {"boolean"},
}


@dataclass
class Evaluation:
    """What was found out about a candidate, the input of the decision."""

    loads: bool = False
    predicts_example: bool = False
    column_problems: list[str] = field(default_factory=list)
    candidate_auc: float | None = None
    champion_auc: float | None = None
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    failure: str = ""
    shadow_decisions: int | None = None
    """Rows the candidate scored in the shadow of @champion (training/compare.py), if asked."""


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    evaluation: Evaluation,
    has_champion: bool,
    margin: float,
    floor: float,
    skip_metric: bool,
    min_shadow_decisions: int = 0,
) -> Decision:
    """The promotion decision table; pure, so it is unit-tested row by row."""
    if not evaluation.loads:
        return Decision(False, f"does not load: {evaluation.failure}")
    if not evaluation.predicts_example:
        return Decision(False, f"fails on its own input example: {evaluation.failure}")
    if evaluation.column_problems:
        return Decision(
            False,
            "incompatible with the champion's inputs: " + "; ".join(evaluation.column_problems),
        )
    shadowed = evaluation.shadow_decisions or 0
    if has_champion and min_shadow_decisions and shadowed < min_shadow_decisions:
        return Decision(
            False,
            f"only {shadowed} shadow decisions on live traffic, --min-shadow-decisions asks "
            f"for {min_shadow_decisions} (set @{CHALLENGER} to it and let it shadow longer)",
        )
    if skip_metric:
        return Decision(True, "metric test skipped on request (load, predict and columns pass)")
    if evaluation.candidate_auc is None:
        return Decision(False, f"cannot be evaluated: {evaluation.failure or 'no held-out data'}")
    if not has_champion:
        if evaluation.candidate_auc >= floor:
            return Decision(
                True,
                f"ROC AUC {evaluation.candidate_auc:.4f} reaches the floor "
                f"{floor:.4f} and there is no champion yet",
            )
        return Decision(
            False, f"ROC AUC {evaluation.candidate_auc:.4f} is below the floor {floor:.4f}"
        )
    if evaluation.champion_auc is None:
        return Decision(
            False,
            f"the champion cannot be scored on the held-out data: "
            f"{evaluation.failure}; use --force to promote anyway",
        )
    if evaluation.candidate_auc >= evaluation.champion_auc + margin:
        return Decision(
            True,
            f"ROC AUC {evaluation.candidate_auc:.4f} beats the champion's "
            f"{evaluation.champion_auc:.4f} by at least {margin:.4f}",
        )
    return Decision(
        False,
        f"ROC AUC {evaluation.candidate_auc:.4f} does not beat the "
        f"champion's {evaluation.champion_auc:.4f} by {margin:.4f}",
    )


def column_problems(champion_schema, candidate_schema) -> list[str]:
    """Champion input columns the candidate lacks or types it cannot take."""
    candidate = {spec.name: spec for spec in candidate_schema.inputs}
    problems = []
    for spec in champion_schema.inputs:
        other = candidate.get(spec.name)
        champion_type, candidate_type = _type_name(spec), _type_name(other) if other else None
        if other is None:
            problems.append(f"column '{spec.name}' is missing")
        elif candidate_type not in _COMPATIBLE_TYPES.get(champion_type, {champion_type}):
            problems.append(f"column '{spec.name}' was {champion_type}, is {candidate_type}")
    return problems


def _type_name(spec) -> str:
    kind = spec.type
    return getattr(kind, "name", str(kind)).lower()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="promote", description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or local server")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--candidate", type=int, help="version to evaluate (default: newest)")
    which.add_argument(
        "--version", type=int, help="promote this version without the metric test (rollback or pin)"
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.002,
        help="ROC AUC the candidate must gain over the champion (default 0.002)",
    )
    parser.add_argument(
        "--floor",
        type=float,
        default=0.65,
        help="minimum ROC AUC when there is no champion (default 0.65)",
    )
    parser.add_argument("--force", action="store_true", help="skip the metric test")
    parser.add_argument(
        "--min-shadow-decisions",
        type=int,
        default=0,
        help="refuse unless the candidate scored at least this many rows in the shadow of the "
        "champion (decision log, training/compare.py; default 0: not required, and never for "
        "--version)",
    )
    parser.add_argument(
        "--shadow-window-hours",
        type=float,
        default=168.0,
        help="how far back shadow decisions count (default 168)",
    )
    return parser.parse_args(argv)


@cli_main("promote")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_client(args.tracking_uri)
    from mlflow import MlflowClient

    client = MlflowClient()
    champion = _alias_version(client, args.model_name, CHAMPION)
    candidate = _candidate(client, args)
    if champion is not None and champion.version == candidate.version:
        print(f"promote: {args.model_name} version {candidate.version} is already @{CHAMPION}")
        return 0

    evaluation = evaluate(client, args.model_name, candidate, champion)
    required_shadow = 0 if args.version is not None else args.min_shadow_decisions
    if required_shadow and champion is not None:
        evaluation.shadow_decisions, agreement = _shadow(args, candidate.version)
        evaluation.candidate_metrics |= agreement
    decision = decide(
        evaluation,
        champion is not None,
        args.margin,
        args.floor,
        skip_metric=args.force or args.version is not None,
        min_shadow_decisions=required_shadow,
    )
    record(client, args.model_name, candidate, champion, evaluation, decision)
    champion_text = f"v{champion.version}" if champion else "none"
    if decision.promote:
        client.set_registered_model_alias(args.model_name, CHAMPION, candidate.version)
        print(
            f"promote: {args.model_name} v{candidate.version} is now @{CHAMPION} "
            f"(was {champion_text}): {decision.reason}"
        )
        return 0
    print(
        f"promote: {args.model_name} v{candidate.version} NOT promoted, @{CHAMPION} stays "
        f"{champion_text}: {decision.reason}; v{candidate.version} is now @{CHALLENGER}"
    )
    return 1


def _shadow(args, version: str) -> tuple[int, dict[str, float]]:
    """Rows the version scored as challenger, and its agreement with the champion."""
    from training.compare import reader_settings, shadow_decisions

    comparison = shadow_decisions(
        reader_settings(), args.model_name, str(version), args.shadow_window_hours
    )
    if comparison is None:
        return 0, {"shadow_decisions": 0.0}
    return comparison.rows, {
        "shadow_decisions": float(comparison.rows),
        "shadow_agreement": comparison.agreement,
    }


def _alias_version(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _candidate(client, args):
    from mlflow.exceptions import MlflowException

    wanted = args.version or args.candidate
    try:
        if wanted:
            return client.get_model_version(args.model_name, str(wanted))
        versions = client.search_model_versions(f"name = '{args.model_name}'")
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise CliError(
                f"model '{args.model_name}'"
                + (f" has no version {wanted}" if wanted else " is not registered")
                + "; list versions in the MLflow UI or train one with 'make train'"
            ) from None
        raise
    if not versions:
        raise CliError(f"model '{args.model_name}' has no versions; train one with 'make train'")
    return max(versions, key=lambda v: int(v.version))


def evaluate(client, name: str, candidate, champion) -> Evaluation:
    """Run checks (a) to (c) and score both versions on the candidate's held-out data.

    Checks (a) and (b) are serving/loading.py `load_and_check`, the check every serving worker
    and the server's pre-swap check run, so a promoted version is one the server will take.
    """
    import mlflow

    evaluation = Evaluation()
    try:
        candidate_model, _ = load_and_check(f"models:/{name}/{candidate.version}")
    except ModelCheckFailed as failure:
        evaluation.loads = failure.stage != "load"
        evaluation.failure = failure.reason
        return evaluation
    evaluation.loads = evaluation.predicts_example = True

    champion_model = None
    if champion is not None:
        champion_model = mlflow.pyfunc.load_model(f"models:/{name}/{champion.version}")
        evaluation.column_problems = column_problems(
            champion_model.metadata.signature, candidate_model.metadata.signature
        )
        if evaluation.column_problems:
            return evaluation

    held_out = _held_out(client, candidate)
    if held_out is None:
        evaluation.failure = "the candidate's run has no held-out data (evaluation/test.parquet)"
        return evaluation
    features, target = held_out
    evaluation.candidate_metrics = _score(candidate_model, features, target)
    evaluation.candidate_auc = evaluation.candidate_metrics["roc_auc"]
    if champion_model is not None:
        try:
            evaluation.champion_metrics = _score(champion_model, features, target)
            evaluation.champion_auc = evaluation.champion_metrics["roc_auc"]
        except Exception as error:  # noqa: BLE001 - reported in the decision, never hidden
            evaluation.failure = short_reason(error)
    return evaluation


def _held_out(client, version):
    """The candidate run's held-out rows and target, or None if the run has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not version.run_id:
        return None
    run = client.get_run(version.run_id)
    target = run.data.tags.get("evaluation_target")
    if not target:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=EVALUATION_ARTIFACT, dst_path=tmp
            )
        except (MlflowException, OSError):
            return None
        frame = pd.read_parquet(path)
    return frame.drop(columns=[target]), frame[target]


def _score(model, features: pd.DataFrame, target) -> dict[str, float]:
    prediction = model.predict(features)
    threshold_free = classification_metrics(target, prediction["probability"], 0.5)
    labels = prediction["label"].to_numpy()
    threshold_free["accuracy"] = float((labels == target.to_numpy()).mean())
    del threshold_free["f1"]
    return threshold_free


def record(
    client, name: str, candidate, champion, evaluation: Evaluation, decision: Decision
) -> None:
    """Write the decision on the candidate version; move @challenger when not promoted."""
    tags = {
        "promotion.decision": "promoted" if decision.promote else "rejected",
        "promotion.reason": decision.reason[:5000],
        "promotion.evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion.champion_version": champion.version if champion else "none",
    }
    tags |= {
        f"promotion.candidate.{k}": f"{v:.6f}" for k, v in evaluation.candidate_metrics.items()
    }
    tags |= {f"promotion.champion.{k}": f"{v:.6f}" for k, v in evaluation.champion_metrics.items()}
    for key, value in tags.items():
        client.set_model_version_tag(name, candidate.version, key, value)
    if not decision.promote:
        client.set_registered_model_alias(name, CHALLENGER, candidate.version)


if __name__ == "__main__":
    sys.exit(main())
