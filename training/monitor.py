"""Drift report: PSI of live traffic (the decision log) against the model's training reference.

    python -m training.monitor                      # the last MONITOR_WINDOW_HOURS hours
    python -m training.monitor --window-hours 168 --version 3

For every version of the model that scored at least MONITOR_MIN_ROWS rows in the window (as
`@champion`, role `champion` in the log): PSI per input column (10 deciles of the reference;
categorical columns by category) and of the score, against `monitoring/reference.parquet` of
the version's training run (training/reference.py). Each report is an MLflow run in the
experiment MONITOR_EXPERIMENT (metrics `psi.<column>`, `psi.score`; plots of reference vs live
per column and of PSI per column), and the version gets `monitoring.*` tags with the latest
PSI. With MONITOR_PUSHGATEWAY_URL the PSI also goes to a Prometheus Pushgateway, where the
`ModelInputDrift` alert reads it.

Runs as the MLflow user `trainer` (EDIT on the model and its experiment, may create the
monitoring experiment; training/README.md "Monitoring"). Exit status: 0 reported (or nothing
to report), 2 bad usage, store or registry error.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.secret_files import read_or_exit
from serving.decisions import CHAMPION_ROLE, DecisionSettings, InputMode, StoreError
from serving.decisions.settings import SECRET_VARIABLES
from training.drift import Bins, column_bins, status
from training.reference import REFERENCE_ARTIFACT, SCORE_COLUMN
from training.registry import DEFAULT_MODEL_NAME, CliError, cli_main, configure_client

SCORE = "score"
"""The name the score's PSI has in metrics and tags (`psi.score`)."""


class MonitorSettings(BaseSettings):
    """The drift report's settings; every field has a MONITOR_ variable."""

    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore", env_ignore_empty=True)

    psi_watch: float = Field(0.10, gt=0, description="PSI from which a column is watched.")
    psi_act: float = Field(0.25, gt=0, description="PSI from which a column needs action.")
    window_hours: float = Field(24.0, gt=0, le=24 * 400, description="Hours of log per report.")
    min_rows: int = Field(200, ge=1, description="Fewest rows of a version worth a report.")
    experiment: str = Field(
        f"{DEFAULT_MODEL_NAME}-monitoring", description="MLflow experiment of the reports."
    )
    pushgateway_url: str | None = Field(
        None, description="Prometheus Pushgateway for the PSI gauges (the drift alert)."
    )

    @model_validator(mode="after")
    def _check_thresholds(self) -> MonitorSettings:
        if self.psi_watch >= self.psi_act:
            raise ValueError("MONITOR_PSI_WATCH must be below MONITOR_PSI_ACT")
        return self


@dataclass
class Report:
    """The drift of one model version over one window."""

    model_name: str
    version: str
    start: datetime
    end: datetime
    rows: int
    reference_rows: int
    bins: dict[str, Bins]
    """Column (or SCORE) -> its bins; inputs only when the log kept them (mode full)."""

    @property
    def psi(self) -> dict[str, float]:
        return {column: bins.psi for column, bins in self.bins.items()}

    def identity(self) -> dict[str, str]:
        """Which model version and which window the report is of."""
        return {
            "model_name": self.model_name,
            "model_version": self.version,
            "window_start": self.start.isoformat(timespec="seconds"),
            "window_end": self.end.isoformat(timespec="seconds"),
        }

    def worst_input(self) -> tuple[str | None, float]:
        inputs = {k: v for k, v in self.psi.items() if k != SCORE}
        if not inputs:
            return None, 0.0
        column = max(inputs, key=inputs.get)
        return column, inputs[column]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="monitor", description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or local server")
    parser.add_argument("--window-hours", type=float, help="default: $MONITOR_WINDOW_HOURS (24)")
    parser.add_argument("--end", type=_utc, help="end of the window, ISO 8601 (default: now)")
    parser.add_argument("--version", help="report only this version")
    parser.add_argument("--output", help="write the reports as JSON to this file")
    return parser.parse_args(argv)


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def load_monitor_settings() -> tuple[MonitorSettings, DecisionSettings]:
    try:
        # A reader needs the store only, never the hashed mode's key: mode off here.
        return MonitorSettings(), DecisionSettings(mode=InputMode.OFF)
    except ValidationError as error:
        first = error.errors()[0]
        where = f"{first['loc'][0]}: " if first["loc"] else ""
        raise CliError(f"invalid settings: {where}{first['msg']}") from None


@cli_main("monitor")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Secrets as files (compose, common/secret_files.py): the store's and the registry's.
    read_or_exit([*SECRET_VARIABLES, "MLFLOW_TRACKING_PASSWORD"])
    settings, decision_settings = load_monitor_settings()
    end = args.end or datetime.now(UTC)
    start = end - timedelta(hours=args.window_hours or settings.window_hours)
    live = read_live(decision_settings, args.model_name, start, end, args.version)
    configure_client(args.tracking_uri)
    reports = []
    for version, frame in live.groupby("model_version", sort=True):
        if len(frame) < settings.min_rows:
            print(
                f"monitor: {args.model_name} v{version}: {len(frame)} rows in the window, "
                f"fewer than MONITOR_MIN_ROWS={settings.min_rows}; no report"
            )
            continue
        reference = load_reference(args.model_name, str(version))
        if reference is None:
            print(
                f"monitor: {args.model_name} v{version} has no drift reference "
                f"({REFERENCE_ARTIFACT}: trained before monitoring); retrain it; no report"
            )
            continue
        report = compare(args.model_name, str(version), start, end, reference, frame)
        run_id = log_report(report, settings)
        push_gauges(report, settings)
        reports.append(report)
        column, worst = report.worst_input()
        overall = max(worst, report.psi[SCORE])
        print(
            f"monitor: {args.model_name} v{version}: {report.rows} rows, PSI score "
            f"{report.psi[SCORE]:.3f}, worst input {worst:.3f} ({column or 'inputs not kept'}): "
            f"{status(overall, settings.psi_watch, settings.psi_act)}; MLflow run {run_id}"
        )
    if live.empty:
        print(f"monitor: no decisions of {args.model_name} between {start:%F %T} and {end:%F %T}")
    if args.output:
        with open(args.output, "w") as out:
            json.dump([_summary(report) for report in reports], out, indent=2)
    return 0


def read_live(
    settings: DecisionSettings, model_name: str, start: datetime, end: datetime, version=None
) -> pd.DataFrame:
    """The champion's decisions in the window: one row per scored row, inputs as columns
    (when kept), the score as SCORE_COLUMN, the version as `model_version`."""
    store = settings.open_store()
    try:
        decisions = store.read(start, end, model_name=model_name, roles=(CHAMPION_ROLE,))
    except StoreError as error:
        raise CliError(f"{error}; check DECISIONS_STORE_URI") from None
    finally:
        store.close()
    if version is not None:
        decisions = [d for d in decisions if d.model_version == str(version)]
    records = [
        {
            **(d.inputs if d.input_mode == InputMode.FULL.value and d.inputs else {}),
            SCORE_COLUMN: d.outputs.get("probability"),
            "model_version": d.model_version,
        }
        for d in decisions
    ]
    return pd.DataFrame.from_records(records, columns=None if records else ["model_version"])


def load_reference(model_name: str, version: str) -> pd.DataFrame | None:
    """The version's training reference, or None when its run has none."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    run_id = MlflowClient().get_model_version(model_name, version).run_id
    if not run_id:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp
            )
        except (MlflowException, OSError):
            return None
        return pd.read_parquet(path)


def compare(
    model_name: str,
    version: str,
    start: datetime,
    end: datetime,
    reference: pd.DataFrame,
    live: pd.DataFrame,
) -> Report:
    """PSI per input column the log kept, and of the score."""
    bins = {}
    for column in reference.columns:
        if column == SCORE_COLUMN or column not in live.columns:
            continue
        present = live[column]
        if present.notna().any() or reference[column].notna().any():
            bins[column] = column_bins(reference[column], _typed(present, reference[column]))
    bins[SCORE] = column_bins(reference[SCORE_COLUMN], live[SCORE_COLUMN].astype(float))
    return Report(model_name, version, start, end, len(live), len(reference), bins)


def _typed(values: pd.Series, like: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(like):
        return pd.to_numeric(values, errors="coerce")
    return values


def log_report(report: Report, settings: MonitorSettings) -> str:
    """The report as an MLflow run, and the latest PSI as tags on the model version."""
    import mlflow
    from mlflow import MlflowClient

    psi = report.psi
    column, worst = report.worst_input()
    overall = status(max(worst, psi[SCORE]), settings.psi_watch, settings.psi_act)
    mlflow.set_experiment(settings.experiment)
    run_name = f"drift-v{report.version}-{report.end:%Y%m%dT%H%M}"
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(
            report.identity() | {"psi_watch": settings.psi_watch, "psi_act": settings.psi_act}
        )
        mlflow.log_metrics(
            {f"psi.{name}": value for name, value in psi.items()}
            | {"live_rows": report.rows, "reference_rows": report.reference_rows}
        )
        mlflow.set_tags(
            {
                "drift.status": overall,
                "drift.columns_to_act": ",".join(
                    name for name, value in psi.items() if value >= settings.psi_act
                ),
            }
        )
        mlflow.log_dict(_summary(report), "drift/psi.json")
        for name, figure in figures(report, settings).items():
            mlflow.log_figure(figure, f"plots/{name}")
    tags = {
        "monitoring.status": overall,
        "monitoring.psi_score": f"{psi[SCORE]:.4f}",
        "monitoring.psi_max_input": f"{worst:.4f}",
        "monitoring.psi_max_input_column": column or "",
        "monitoring.rows": str(report.rows),
        "monitoring.window_end": report.end.isoformat(timespec="seconds"),
        "monitoring.run_id": run.info.run_id,
    }
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(report.model_name, report.version, key, value)
    return run.info.run_id


def figures(report: Report, settings: MonitorSettings) -> dict:
    """PSI per column, and reference vs live shares of every column: name -> figure."""
    import matplotlib

    matplotlib.use("Agg")  # no display in jobs and CI
    import matplotlib.pyplot as plt

    out = {}
    psi = dict(sorted(report.psi.items(), key=lambda item: item[1]))
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(psi) + 1.5))
    colors = [_color(v, settings) for v in psi.values()]
    ax.barh(list(psi), list(psi.values()), color=colors)
    for threshold, style in ((settings.psi_watch, ":"), (settings.psi_act, "--")):
        ax.axvline(threshold, color="grey", linestyle=style)
    ax.set_xlabel("PSI (dotted: watch, dashed: act)")
    ax.set_title(f"{report.model_name} v{report.version}: PSI per column, {report.rows} rows")
    fig.tight_layout()
    out["psi_by_column.png"] = fig
    for column, bins in report.bins.items():
        fig, ax = plt.subplots(figsize=(7, 3.5))
        positions = np.arange(len(bins.labels))
        ax.bar(positions - 0.2, bins.reference, width=0.4, label="reference (training)")
        ax.bar(positions + 0.2, bins.live, width=0.4, label="live (decision log)")
        ax.set_xticks(positions, bins.labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("share of rows")
        ax.set_title(f"{column}: PSI {bins.psi:.3f}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out[f"distributions/{column}.png"] = fig
    return out


def _color(value: float, settings: MonitorSettings) -> str:
    return {"stable": "tab:green", "watch": "tab:orange", "act": "tab:red"}[
        status(value, settings.psi_watch, settings.psi_act)
    ]


def push_gauges(report: Report, settings: MonitorSettings) -> None:
    """PSI per column and the act threshold to the Pushgateway (the ModelInputDrift alert)."""
    if not settings.pushgateway_url:
        return
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    gauge = Gauge(
        "model_drift_psi",
        "PSI of the last drift report, per column (score: the model's probability)",
        ["model_name", "model_version", "column"],
        registry=registry,
    )
    for column, value in report.psi.items():
        gauge.labels(report.model_name, report.version, column).set(value)
    threshold = Gauge(
        "model_drift_psi_threshold",
        "The drift thresholds of the monitor (MONITOR_PSI_WATCH, MONITOR_PSI_ACT)",
        ["model_name", "level"],
        registry=registry,
    )
    threshold.labels(report.model_name, "watch").set(settings.psi_watch)
    threshold.labels(report.model_name, "act").set(settings.psi_act)
    Gauge(
        "model_drift_report_timestamp_seconds",
        "When the last drift report was made",
        ["model_name"],
        registry=registry,
    ).labels(report.model_name).set(report.end.timestamp())
    try:
        push_to_gateway(
            settings.pushgateway_url,
            job="drift-monitor",
            registry=registry,
            grouping_key={"model_name": report.model_name},
        )
    except OSError as error:
        print(f"monitor: warning: Pushgateway not reached ({error}); the report is in MLflow")


def _summary(report: Report) -> dict:
    return report.identity() | {
        "rows": report.rows,
        "psi": report.psi,
        "bins": {
            column: {
                "labels": bins.labels,
                "reference": bins.reference.round(6).tolist(),
                "live": bins.live.round(6).tolist(),
            }
            for column, bins in report.bins.items()
        },
    }


if __name__ == "__main__":
    sys.exit(main())
