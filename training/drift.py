"""Population stability index (PSI): how far live values moved from a reference.

PSI = sum over bins of (live share - reference share) * ln(live share / reference share).
Numeric columns are cut at the deciles of the reference (10 bins, fewer when deciles repeat),
categorical columns have one bin per category; a missing value is a bin of its own in both.
Empty bins get a share of `EPSILON`, so a category never seen before counts heavily but
finitely. The convention in credit risk: below 0.10 stable, 0.10 to 0.25 watch, above 0.25 act.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EPSILON = 1e-4
MISSING = "(missing)"


@dataclass(frozen=True)
class Bins:
    """The bins of one column and the share of each in the reference and in live data."""

    labels: list[str]
    reference: np.ndarray
    live: np.ndarray

    @property
    def psi(self) -> float:
        return psi(self.reference, self.live)


def psi(reference_share: np.ndarray, live_share: np.ndarray) -> float:
    """PSI of two distributions over the same bins (shares, each summing to 1)."""
    expected = np.maximum(np.asarray(reference_share, dtype=float), EPSILON)
    actual = np.maximum(np.asarray(live_share, dtype=float), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def column_bins(reference: pd.Series, live: pd.Series) -> Bins:
    """Bins of a column: deciles of the reference for numbers, categories otherwise."""
    if pd.api.types.is_numeric_dtype(reference) and not pd.api.types.is_bool_dtype(reference):
        return numeric_bins(reference, pd.to_numeric(live, errors="coerce"))
    return categorical_bins(reference, live)


def numeric_bins(reference: pd.Series, live: pd.Series, bins: int = 10) -> Bins:
    present = reference.dropna().to_numpy(dtype=float)
    inner = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate(([-np.inf], inner, [np.inf]))
    labels = [_interval(low, high) for low, high in zip(edges[:-1], edges[1:], strict=True)]
    return Bins(labels + [MISSING], _numeric_shares(reference, edges), _numeric_shares(live, edges))


def _numeric_shares(values: pd.Series, edges: np.ndarray) -> np.ndarray:
    values = values.to_numpy(dtype=float)
    present = values[~np.isnan(values)]
    # side=left: a value equal to a decile falls in the bin that ends there, (low, high].
    counts = np.bincount(
        np.searchsorted(edges[1:-1], present, side="left"), minlength=len(edges) - 1
    )
    counts = np.append(counts, np.isnan(values).sum())
    return counts / max(len(values), 1)


def categorical_bins(reference: pd.Series, live: pd.Series) -> Bins:
    ref, now = _categories(reference), _categories(live)
    labels = list(dict.fromkeys([*sorted(ref.unique()), *sorted(now.unique())]))
    return Bins(labels, _shares(ref, labels), _shares(now, labels))


def _categories(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), MISSING).astype(str)


def _shares(values: pd.Series, labels: list[str]) -> np.ndarray:
    counts = values.value_counts()
    return np.array([counts.get(label, 0) for label in labels], dtype=float) / max(len(values), 1)


def _interval(low: float, high: float) -> str:
    if np.isinf(low):
        return f"<= {high:.4g}"
    if np.isinf(high):
        return f"> {low:.4g}"
    return f"({low:.4g}, {high:.4g}]"


def status(value: float, watch: float, act: float) -> str:
    """`stable`, `watch` or `act` for a PSI and the two thresholds."""
    if value >= act:
        return "act"
    if value >= watch:
        return "watch"
    return "stable"
