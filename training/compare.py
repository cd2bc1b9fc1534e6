"""Shadow report: how `@challenger` decided on the same live requests as `@champion`.

    python -m training.compare                       # the last 168 hours of the decision log
    python -m training.compare --window-hours 24 --json report.json

The model server scores a share of live requests with the challenger after the champion's
answer was sent (SHADOW_* settings, serving/shadow.py); both decisions are in the decision log
under the same request id and row. For every pair of versions seen together this reports:

- agreement at the cut-off: the share of rows both label the same (each at its own threshold;
  label 1, a predicted default, is a refusal);
- the swap set: rows approved by the champion and refused by the challenger, and the reverse;
- the correlation of the two probabilities (Pearson and Spearman).

`python -m training.promote --min-shadow-decisions N` refuses a promotion with fewer paired
decisions of the candidate. Exit status: 0 reported (or nothing to report), 2 store error.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from common.secret_files import read_or_exit
from serving.decisions import (
    CHALLENGER_ROLE,
    CHAMPION_ROLE,
    DecisionSettings,
    InputMode,
    StoreError,
)
from serving.decisions.settings import SECRET_VARIABLES
from training.registry import DEFAULT_MODEL_NAME, CliError, cli_main

DEFAULT_WINDOW_HOURS = 168.0


@dataclass(frozen=True)
class Comparison:
    """The champion and the challenger on the same rows."""

    champion_version: str
    challenger_version: str
    rows: int
    requests: int
    agreement: float
    approved_by_champion_refused_by_challenger: int
    refused_by_champion_approved_by_challenger: int
    pearson: float | None
    spearman: float | None


def paired_decisions(
    settings: DecisionSettings, model_name: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """One row per scored row that both roles decided: versions, labels and probabilities."""
    store = settings.open_store()
    try:
        decisions = store.read(start, end, model_name, roles=(CHAMPION_ROLE, CHALLENGER_ROLE))
    except StoreError as error:
        raise CliError(f"{error}; check DECISIONS_STORE_URI") from None
    finally:
        store.close()
    frame = pd.DataFrame.from_records(
        [
            {
                "request_id": d.request_id,
                "row_index": d.row_index,
                "role": d.role,
                "version": d.model_version,
                "label": d.outputs.get("label"),
                "probability": d.outputs.get("probability"),
            }
            for d in decisions
        ],
        columns=["request_id", "row_index", "role", "version", "label", "probability"],
    )
    key = ["request_id", "row_index"]
    champion = frame[frame.role == CHAMPION_ROLE].drop(columns="role")
    challenger = frame[frame.role == CHALLENGER_ROLE].drop(columns="role")
    # A request id repeated by a client: keep each role's first decision of the row.
    champion = champion.drop_duplicates(key)
    challenger = challenger.drop_duplicates(key)
    return champion.merge(challenger, on=key, suffixes=("_champion", "_challenger"))


def compare(pairs: pd.DataFrame) -> list[Comparison]:
    """One Comparison per (champion version, challenger version) seen together."""
    out = []
    for (champion, challenger), group in pairs.groupby(
        ["version_champion", "version_challenger"], sort=True
    ):
        same = group.label_champion == group.label_challenger
        out.append(
            Comparison(
                champion_version=str(champion),
                challenger_version=str(challenger),
                rows=len(group),
                requests=group.request_id.nunique(),
                agreement=float(same.mean()),
                approved_by_champion_refused_by_challenger=int(
                    ((group.label_champion == 0) & (group.label_challenger == 1)).sum()
                ),
                refused_by_champion_approved_by_challenger=int(
                    ((group.label_champion == 1) & (group.label_challenger == 0)).sum()
                ),
                pearson=_correlation(group, "pearson"),
                spearman=_correlation(group, "spearman"),
            )
        )
    return out


def _correlation(group: pd.DataFrame, method: str) -> float | None:
    if len(group) < 3:
        return None
    value = group.probability_champion.astype(float).corr(
        group.probability_challenger.astype(float), method=method
    )
    return None if pd.isna(value) else float(value)


def shadow_decisions(
    settings: DecisionSettings, model_name: str, version: str, window_hours: float
) -> Comparison | None:
    """The comparison of `version` as challenger over the last `window_hours`, or None."""
    end = datetime.now(UTC)
    pairs = paired_decisions(settings, model_name, end - timedelta(hours=window_hours), end)
    pairs = pairs[pairs.version_challenger == str(version)]
    if pairs.empty:
        return None
    # Against whichever champion(s) it shadowed: the rows add up.
    merged = pairs.assign(version_champion="any")
    [comparison] = compare(merged)
    return comparison


def reader_settings() -> DecisionSettings:
    """The decision log's settings for a reader: the store only, never the hash key."""
    read_or_exit(SECRET_VARIABLES)
    try:
        return DecisionSettings(mode=InputMode.OFF)
    except ValueError as error:
        raise CliError(f"invalid DECISIONS_* settings: {error}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="compare", description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--window-hours", type=float, default=DEFAULT_WINDOW_HOURS)
    parser.add_argument("--end", type=datetime.fromisoformat, help="ISO 8601 (default: now)")
    parser.add_argument("--json", dest="json_path", help="write the comparisons to this file")
    args = parser.parse_args(argv)
    if args.window_hours <= 0:
        parser.error("--window-hours must be positive")
    return args


@cli_main("compare")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = reader_settings()
    end = args.end or datetime.now(UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    start = end - timedelta(hours=args.window_hours)
    comparisons = compare(paired_decisions(settings, args.model_name, start, end))
    if not comparisons:
        print(
            f"compare: no shadow decisions of {args.model_name} in the last "
            f"{args.window_hours:g} hours (is SHADOW_SHARE above 0 and @challenger set?)"
        )
    for c in comparisons:
        correlation = "n/a" if c.pearson is None else f"{c.pearson:.3f}"
        print(
            f"compare: {args.model_name} champion v{c.champion_version} vs challenger "
            f"v{c.challenger_version}: {c.rows} rows ({c.requests} requests), agreement "
            f"{c.agreement:.1%}, approved->refused {c.approved_by_champion_refused_by_challenger}, "
            f"refused->approved {c.refused_by_champion_approved_by_challenger}, "
            f"score correlation {correlation}"
        )
    if args.json_path:
        with open(args.json_path, "w") as out:
            json.dump([asdict(c) for c in comparisons], out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
