"""Train the credit-risk pipeline, log the run to MLflow and register the model.

    python -m training.train                       # built-in data, boosted trees
    python -m training.train --classifier logreg
    python -m training.train --data loans.csv --target defaulted --reasons my-reasons.yaml

Prints one line with the registered version; exits 2 with one line on bad input, before
anything is logged or registered.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from common.facts import REASON_CODES_KEY
from training import credit_model
from training.contract import CONTRACT_KEY, build_contract, read_overrides
from training.data import DataError, TrainingData, builtin_data, load_user_data
from training.evaluate import best_threshold, classification_metrics, figures
from training.explain import (
    DEFAULT_REASON_TABLE,
    build_explainer,
    global_figure,
    read_reason_table,
    reason_codes,
    save_explainer,
)
from training.pipeline import CLASSIFIERS, build_pipeline
from training.registry import DEFAULT_MODEL_NAME, CliError, cli_main, configure_client

EVALUATION_ARTIFACT = "evaluation/test.parquet"
MODEL_CODE = Path(credit_model.__file__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="CSV or Parquet file (default: built-in data)")
    parser.add_argument("--target", help="target column of --data (two classes)")
    parser.add_argument("--classifier", choices=CLASSIFIERS, default="hgb")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="registered model name")
    parser.add_argument(
        "--experiment", default=DEFAULT_MODEL_NAME, help="MLflow experiment name (the model's)"
    )
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or local server")
    parser.add_argument("--rows", type=int, default=25_000, help="rows of built-in data")
    parser.add_argument("--seed", type=int, default=42, help="seed for data, split and model")
    parser.add_argument("--output", type=Path, help="write the result as JSON to this file")
    parser.add_argument(
        "--unknown-categories",
        choices=("refuse", "accept"),
        default="refuse",
        help="what the model server does with a text value outside the training categories "
        "(default: refuse with 400)",
    )
    parser.add_argument(
        "--contract",
        type=Path,
        help="JSON file overriding the input contract's rules per column (training/README.md)",
    )
    parser.add_argument(
        "--reasons",
        type=Path,
        help=f"YAML reason table: a code and officer text per input column "
        f"(default: {DEFAULT_REASON_TABLE.relative_to(DEFAULT_REASON_TABLE.parents[1])}, "
        "the built-in data's)",
    )
    args = parser.parse_args(argv)
    if args.data and not args.target:
        parser.error("--data needs --target COLUMN, the column that says who defaulted")
    if args.rows < 1000:
        parser.error("--rows must be at least 1000 for a meaningful split")
    return args


@cli_main("train")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        data = (
            load_user_data(args.data, args.target)
            if args.data
            else builtin_data(args.rows, args.seed)
        )
        args.contract_overrides = read_overrides(args.contract)
        args.reason_table = read_reason_table(args.reasons, list(feature_columns(data)))
    except DataError as error:
        raise CliError(str(error)) from None
    configure_client(args.tracking_uri)
    result = train_and_register(data, args)
    print(
        f"train: registered {result['model_name']} version {result['version']} "
        f"(run {result['run_id']}, test ROC AUC {result['metrics']['test_roc_auc']:.4f})"
    )
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


@dataclass
class Splits:
    """Train (fit), validation (threshold) and test (metrics, promotion) rows, stratified."""

    x_train: pd.DataFrame
    x_val: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_val: pd.Series
    y_test: pd.Series


@dataclass
class Fitted:
    """A fitted pipeline with its decision threshold and what it scored on held-out rows."""

    pipeline: Pipeline
    threshold: float
    test_probability: np.ndarray
    metrics: dict[str, float]


def train_and_register(data: TrainingData, args: argparse.Namespace) -> dict:
    """Fit, evaluate, log and register; returns what was registered."""
    import mlflow

    splits = split_data(data, args.seed)
    try:
        contract = build_contract(
            data,
            splits.x_train,
            getattr(args, "unknown_categories", "refuse"),
            getattr(args, "contract_overrides", None),
        )
    except DataError as error:
        raise CliError(str(error)) from None
    reason_table = reason_table_of(data, args)
    fitted = fit_and_evaluate(data, splits, args.classifier, args.seed)
    mlflow.set_experiment(args.experiment)
    with mlflow.start_run(run_name=f"{args.classifier}-{data_hash(data.frame)[:8]}") as run:
        log_run_facts(data, args, fitted)
        log_dataset(data, args.data)
        log_figures(fitted, splits, args.seed)
        model_info = log_model(
            fitted.pipeline,
            splits.x_train,
            splits.x_test,
            fitted.threshold,
            args.model_name,
            contract,
            reason_table,
        )
        log_held_out(splits, data.target)
    version = model_info.registered_model_version
    return {
        "model_name": args.model_name,
        "version": int(version),
        "run_id": run.info.run_id,
        "model_uri": f"models:/{args.model_name}/{version}",
        "threshold": fitted.threshold,
        "metrics": fitted.metrics,
    }


def feature_columns(data: TrainingData) -> tuple[str, ...]:
    """The model's input columns, in the order it is trained on."""
    return data.numeric_columns + data.categorical_columns


def reason_table_of(data: TrainingData, args: argparse.Namespace) -> dict[str, dict]:
    """The reason table main() read, or the one --reasons (default file) names."""
    table = getattr(args, "reason_table", None)
    if table is not None:
        return table
    try:
        return read_reason_table(getattr(args, "reasons", None), list(feature_columns(data)))
    except DataError as error:
        raise CliError(str(error)) from None


def split_data(data: TrainingData, seed: int) -> Splits:
    """60 % train, 20 % validation, 20 % test, each with the same share of defaults."""
    x = data.frame[list(feature_columns(data))]
    y = data.frame[data.target]
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.25, stratify=y_rest, random_state=seed
    )
    return Splits(x_train, x_val, x_test, y_train, y_val, y_test)


def fit_and_evaluate(data: TrainingData, splits: Splits, classifier: str, seed: int) -> Fitted:
    """Fit on train, choose the threshold on validation, measure on validation and test."""
    pipeline = build_pipeline(classifier, data.numeric_columns, data.categorical_columns, seed)
    pipeline.fit(splits.x_train, splits.y_train)
    val_probability = pipeline.predict_proba(splits.x_val)[:, 1]
    threshold = best_threshold(splits.y_val, val_probability)
    test_probability = pipeline.predict_proba(splits.x_test)[:, 1]
    metrics = {
        f"test_{k}": v
        for k, v in classification_metrics(splits.y_test, test_probability, threshold).items()
    }
    metrics |= {
        f"val_{k}": v
        for k, v in classification_metrics(splits.y_val, val_probability, threshold).items()
    }
    return Fitted(pipeline, threshold, test_probability, metrics)


def log_run_facts(data: TrainingData, args: argparse.Namespace, fitted: Fitted) -> None:
    """Tags (code and data identity), parameters (data, classifier settings) and metrics."""
    import mlflow

    mlflow.set_tags(
        {
            "git_commit": git_commit(),
            "data_sha256": data_hash(data.frame),
            "data_source": data.source,
        }
    )
    mlflow.log_params(
        {
            "classifier": args.classifier,
            "seed": args.seed,
            "rows": len(data.frame),
            "target": data.target,
            "numeric_columns": ",".join(data.numeric_columns),
            "categorical_columns": ",".join(data.categorical_columns),
            **{
                f"clf_{k}": v
                for k, v in fitted.pipeline.named_steps["classifier"].get_params().items()
                if isinstance(v, (int, float, str, bool)) or v is None
            },
        }
    )
    mlflow.log_metrics(fitted.metrics)


def log_dataset(data: TrainingData, path: Path | None) -> None:
    """The training frame as the run's input dataset (its file when read from one)."""
    import mlflow

    dataset = mlflow.data.from_pandas(
        data.frame,
        source=str(path.resolve()) if path else None,
        targets=data.target,
        name=path.stem if path else "credit-risk-builtin",
    )
    mlflow.log_input(dataset, context="training")


def log_figures(fitted: Fitted, splits: Splits, seed: int) -> None:
    """The evaluation plots of the test rows (training/evaluate.py `figures`)."""
    import mlflow

    for name, figure in figures(
        fitted.pipeline,
        splits.x_test,
        splits.y_test,
        fitted.test_probability,
        fitted.threshold,
        seed,
    ).items():
        mlflow.log_figure(figure, f"plots/{name}")


def log_held_out(splits: Splits, target: str) -> None:
    """The test rows travel with the run, so promotion can score the candidate and the
    champion on the same data later (training/promote.py reads them back)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test.parquet"
        splits.x_test.assign(**{target: splits.y_test}).to_parquet(path)
        mlflow.log_artifact(str(path), artifact_path="evaluation")
        mlflow.set_tag("evaluation_target", target)


def log_model(
    pipeline,
    x_train: pd.DataFrame,
    x_test: pd.DataFrame,
    threshold: float,
    model_name: str,
    contract: dict | None = None,
    reason_table: dict[str, dict] | None = None,
):
    """Log the pipeline in skops format behind the models-from-code pyfunc and register it.

    `contract` (training/contract.py) goes into the MLmodel metadata: the model server
    enforces it, `GET /model` reports it, the APEX kit is rendered from it. With a
    `reason_table` (training/explain.py) the model also carries its explainer and answers
    reason codes when a request's params ask (`reasons`, declared in the signature).
    """
    import mlflow
    import skops.io
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    untrusted = set(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
    unreviewed = untrusted - set(credit_model.TRUSTED_TYPES)
    if unreviewed:
        raise CliError(
            f"the pipeline contains types not reviewed for safe loading: {sorted(unreviewed)}; "
            "review them and add them to TRUSTED_TYPES in training/credit_model.py"
        )
    example = x_test.head(5)
    # Numeric inputs are optional doubles: a missing value (null or an absent column) is imputed.
    # Categoricals are required strings. Declared rather than inferred, so that which columns
    # may be null does not depend on which happened to have gaps in this sample.
    inferred = infer_signature(x_train).inputs
    signature = ModelSignature(
        inputs=Schema(
            [
                ColSpec(spec.type, spec.name, required=spec.type.name == "string")
                for spec in inferred.inputs
            ]
        ),
        outputs=Schema([ColSpec("double", "probability"), ColSpec("long", "label")]),
        # How many reason codes each row should carry; 0 (the default): none, as before.
        params=ParamSchema([ParamSpec(credit_model.REASONS_PARAM, "integer", 0)])
        if reason_table
        else None,
    )
    metadata = {CONTRACT_KEY: contract} if contract else {}
    with tempfile.TemporaryDirectory() as tmp:
        pipeline_path = Path(tmp) / "pipeline.skops"
        skops.io.dump(pipeline, pipeline_path)
        artifacts = {credit_model.PIPELINE_ARTIFACT: str(pipeline_path)}
        if reason_table:
            artifacts |= write_explainer(pipeline, x_train, x_test, threshold, reason_table, tmp)
            metadata[REASON_CODES_KEY] = reason_codes(reason_table)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts=artifacts,
            model_config={"threshold": threshold},
            signature=signature,
            input_example=example,
            metadata=metadata or None,
            registered_model_name=model_name,
            # Listed rather than inferred: inference would run the model in a subprocess.
            pip_requirements=[
                f"{p}=={package_version(p)}"
                for p in ("mlflow", "scikit-learn", "pandas", "numpy", "skops")
            ],
        )


def write_explainer(
    pipeline, x_train: pd.DataFrame, x_test: pd.DataFrame, threshold, reason_table, folder
) -> dict[str, str]:
    """The explainer arrays and the reason table as model artifacts; the reference applicants
    and the global explanation plot go to the run (training/explain.py)."""
    import mlflow

    arrays, reference = build_explainer(pipeline, x_train, threshold)
    explainer_path = Path(folder) / "explainer.npz"
    save_explainer(arrays, explainer_path)
    table_path = Path(folder) / "reason_table.json"
    table_path.write_text(json.dumps(reason_table, indent=2) + "\n", encoding="utf-8")
    reference_path = Path(folder) / "reference.parquet"
    reference.to_parquet(reference_path)
    mlflow.log_artifact(str(reference_path), artifact_path="explanations")
    explainer = credit_model.Explainer(arrays, reason_table)
    sample = x_test.head(1000)
    contributions = explainer.contributions(credit_model._dense(pipeline[:-1].transform(sample)))
    mlflow.log_figure(
        global_figure(contributions, explainer.columns), "plots/reason_contributions.png"
    )
    return {
        credit_model.EXPLAINER_ARTIFACT: str(explainer_path),
        credit_model.REASON_TABLE_ARTIFACT: str(table_path),
    }


def data_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of the frame's content (values, column names and order)."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
    return digest.hexdigest()


def git_commit() -> str:
    """The commit the training code comes from: $GIT_REVISION (set in the trainer image), the
    checkout's HEAD, or 'unknown'."""
    if os.environ.get("GIT_REVISION", "unknown") != "unknown":
        return os.environ["GIT_REVISION"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
