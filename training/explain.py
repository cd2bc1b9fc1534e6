"""The explainer arrays and the reason table, built at training time and logged with the model.

What the served model needs to give reasons (training/credit_model.py `Explainer` computes
them) is written here as plain arrays, `explainer.npz`, loaded with `allow_pickle=False`:

- the map from the transformed features back to the input columns (the one-hot features of a
  text column belong to it), so that contributions are given per column an APEX form sends;
- the **reference population**: the training applicants at or just below the approval cut-off
  (probability of default under the decision threshold, the `REFERENCE_ROWS` closest to it).
  This is the comparison US Regulation B's commentary names (applicants at or slightly above
  the passing score): a contribution says how much a column moved this applicant's log-odds
  away from the applicants who were only just approved;
- for boosted trees: every leaf of every tree with its value and, per feature its path tests,
  the interval (lo, hi] a row must fall in (HistGradientBoosting sends `x <= threshold` left).
  The served model computes exact interventional TreeSHAP against the reference rows from
  these; for logistic regression: the coefficients (exact linear contributions).

The reason table (`reasons.yaml` beside this file, or `--reasons FILE`) gives every input
column a stable code and the text a loan officer reads when that column raised the risk.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from training.data import DataError

DEFAULT_REASON_TABLE = Path(__file__).with_name("reasons.yaml")
REFERENCE_ROWS = 64
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,15}$")
_MAX_TEXT = 200


# -------------------------------------------------------------------------------- reason table
def read_reason_table(path: Path | None, columns: list[str]) -> dict[str, dict]:
    """The reason table for the model's input `columns`: {column: {"code", "text"}}, in
    column order. DataError (one line) when the file is unusable or does not fit the data."""
    path = path or DEFAULT_REASON_TABLE
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise DataError(
            f"reason table {path} cannot be read as YAML ({type(error).__name__}); "
            "fix it or pass another with --reasons"
        ) from None
    entries = document.get("columns") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise DataError(
            f'reason table {path} must be {{"columns": {{"<column>": {{"code": .., "text": ..}}}}}}'
        )
    return check_reason_table(entries, columns, str(path))


def check_reason_table(entries: dict, columns: list[str], where: str) -> dict[str, dict]:
    """Every input column once, a unique code of 1-16 capitals/digits, a one-line text."""
    missing = [column for column in columns if column not in entries]
    if missing:
        raise DataError(
            f"reason table {where} has no entry for columns {missing}; add a code and text "
            "for each (training/README.md, reason codes) or pass your table with --reasons"
        )
    extra = sorted(set(entries) - set(columns))
    if extra:
        raise DataError(
            f"reason table {where} names columns the data does not have: {extra}; remove them"
        )
    table, seen = {}, {}
    for column in columns:
        entry = entries[column]
        code = entry.get("code") if isinstance(entry, dict) else None
        text = entry.get("text") if isinstance(entry, dict) else None
        if not isinstance(code, str) or not _CODE.match(code):
            raise DataError(
                f"reason table {where}: column '{column}' needs a code of 1 to 16 capitals, "
                "digits, '-' or '_' (e.g. R04)"
            )
        if not isinstance(text, str) or not text.strip() or "\n" in text.strip():
            raise DataError(f"reason table {where}: column '{column}' needs a one-line text")
        if len(text.strip()) > _MAX_TEXT:
            raise DataError(
                f"reason table {where}: the text of column '{column}' is over {_MAX_TEXT} "
                "characters"
            )
        if code in seen:
            raise DataError(
                f"reason table {where}: code {code} is used by both '{seen[code]}' and "
                f"'{column}'; codes must be unique"
            )
        seen[code] = column
        table[column] = {"code": code, "text": text.strip()}
    return table


def reason_codes(table: dict[str, dict]) -> list[dict]:
    """The table as the list `GET /model` and the APEX kit show: column, code, text."""
    return [{"column": column, **entry} for column, entry in table.items()]


# ----------------------------------------------------------------------------------- explainer
def feature_groups(pipeline: Pipeline) -> np.ndarray:
    """For each transformed feature, the index of its input column (pipeline.feature_names_in_).

    Read from the fitted ColumnTransformer: its output slices per transformer and, inside the
    categorical one, how many one-hot features each text column got (infrequent categories
    merged, training/pipeline.py)."""
    preprocess = pipeline.named_steps["preprocess"]
    inputs = list(pipeline.feature_names_in_)
    width = max(section.stop for section in preprocess.output_indices_.values())
    group = np.full(width, -1, dtype=np.int64)
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        section = preprocess.output_indices_[name]
        last = transformer.steps[-1][1] if isinstance(transformer, Pipeline) else transformer
        # OneHotEncoder: outputs per input column; anything else here is one output per column.
        counts = getattr(last, "_n_features_outs", [1] * len(columns))
        start = section.start
        for column, count in zip(columns, counts, strict=True):
            group[start : start + count] = inputs.index(column)
            start += count
        if start != section.stop:
            raise ValueError(f"cannot map the {name} features back to input columns")
    if (group < 0).any():
        raise ValueError("some transformed features belong to no input column")
    return group


def reference_rows(probability: np.ndarray, threshold: float, rows: int = REFERENCE_ROWS):
    """Indices of the applicants just approved: probability under the threshold, closest to
    it (all approved ones when fewer; the nearest overall when nobody was approved)."""
    approved = np.flatnonzero(probability < threshold)
    pool = approved if len(approved) else np.arange(len(probability))
    closest = np.argsort(np.abs(threshold - probability[pool]), kind="stable")[:rows]
    return np.sort(pool[closest])


def build_explainer(
    pipeline: Pipeline, x_train: pd.DataFrame, threshold: float
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The arrays of `explainer.npz` and the reference applicants (input columns)."""
    probability = pipeline.predict_proba(x_train)[:, 1]
    reference = x_train.iloc[reference_rows(probability, threshold)]
    features = dense(pipeline[:-1].transform(reference))
    classifier = pipeline.named_steps["classifier"]
    arrays = {
        "columns": np.array(list(pipeline.feature_names_in_), dtype=str),
        "group": feature_groups(pipeline),
        "reference": features.astype(np.float64),
        "base_value": np.float64(classifier.decision_function(features).mean()),
    }
    if isinstance(classifier, LogisticRegression):
        arrays |= {
            "kind": np.array("linear"),
            "coef": classifier.coef_[0].astype(np.float64),
            "intercept": np.float64(classifier.intercept_[0]),
        }
    elif isinstance(classifier, HistGradientBoostingClassifier):
        arrays |= {"kind": np.array("tree"), **tree_leaves(classifier)}
    else:
        raise ValueError(f"no explainer for {type(classifier).__name__}")
    return arrays, reference


def tree_leaves(classifier: HistGradientBoostingClassifier) -> dict[str, np.ndarray]:
    """Every leaf of the binary classifier's trees: value and per-feature path interval."""
    values, paths = [], []
    for (predictor,) in classifier._predictors:  # binary: one tree per iteration
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("native categorical splits are not supported by the explainer")
        stack = [(0, {})]
        while stack:
            index, bounds = stack.pop()
            node = nodes[index]
            if node["is_leaf"]:
                values.append(float(node["value"]))
                paths.append(bounds)
                continue
            feature, cut = int(node["feature_idx"]), float(node["num_threshold"])
            lo, hi = bounds.get(feature, (-np.inf, np.inf))
            stack.append((int(node["left"]), {**bounds, feature: (lo, min(hi, cut))}))
            stack.append((int(node["right"]), {**bounds, feature: (max(lo, cut), hi)}))
    depth = max(1, max(len(path) for path in paths))
    feature = np.zeros((len(paths), depth), dtype=np.int64)
    lo = np.full((len(paths), depth), -np.inf)
    hi = np.full((len(paths), depth), np.inf)
    for leaf, path in enumerate(paths):
        for slot, (index, (low, high)) in enumerate(sorted(path.items())):
            feature[leaf, slot], lo[leaf, slot], hi[leaf, slot] = index, low, high
    return {
        "leaf_value": np.array(values),
        "leaf_feature": feature,
        "leaf_lo": lo,
        "leaf_hi": hi,
    }


def dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix, dtype=float)


def save_explainer(arrays: dict[str, np.ndarray], path: Path) -> None:
    np.savez_compressed(path, **arrays)


# ---------------------------------------------------------------------------------- global plot
def global_figure(contributions: np.ndarray, columns: list[str]):
    """Mean absolute contribution per column and how often each is the top reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean_abs = np.abs(contributions).mean(axis=0)
    positive = np.where(contributions > 0, contributions, -np.inf)
    top = np.argmax(positive, axis=1)[np.isfinite(positive.max(axis=1))]
    share = np.bincount(top, minlength=len(columns)) / max(1, len(contributions))
    order = np.argsort(mean_abs)
    names = np.array(columns)[order]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.35 * len(columns) + 1.6), sharey=True)
    left.barh(names, mean_abs[order])
    left.set_xlabel("mean |contribution| (log-odds)")
    right.barh(names, share[order])
    right.set_xlabel("share of rows where it is the first reason")
    fig.suptitle("Reason codes: contributions against the reference applicants (test rows)")
    fig.tight_layout()
    return fig
