"""Metrics and plots shared by training and promotion."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics


def classification_metrics(y_true, probability, threshold: float) -> dict[str, float]:
    """The metrics logged for every run and compared at promotion."""
    probability = np.clip(np.asarray(probability, dtype=float), 1e-7, 1 - 1e-7)
    label = (probability >= threshold).astype(int)
    return {
        "roc_auc": float(metrics.roc_auc_score(y_true, probability)),
        "pr_auc": float(metrics.average_precision_score(y_true, probability)),
        "log_loss": float(metrics.log_loss(y_true, probability)),
        "brier": float(metrics.brier_score_loss(y_true, probability)),
        "accuracy": float(metrics.accuracy_score(y_true, label)),
        "f1": float(metrics.f1_score(y_true, label, zero_division=0)),
    }


def best_threshold(y_true, probability) -> float:
    """The probability cut-off with the highest F1 on validation data.

    With a base rate of 10 to 20 percent a cut at 0.5 would almost never say "default"; F1
    balances catching defaults against flagging good applicants.
    """
    precision, recall, thresholds = metrics.precision_recall_curve(y_true, probability)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def figures(pipeline, x_test: pd.DataFrame, y_test, probability, threshold: float, seed: int):
    """The plots a data scientist opens in the MLflow UI: name -> matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay
    from sklearn.inspection import permutation_importance

    out = {}
    fig, ax = plt.subplots(figsize=(5, 5))
    metrics.RocCurveDisplay.from_predictions(y_test, probability, ax=ax, plot_chance_level=True)
    ax.set_title("ROC curve (test)")
    out["roc_curve.png"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    CalibrationDisplay.from_predictions(y_test, probability, n_bins=10, strategy="quantile", ax=ax)
    ax.set_title("Calibration (test)")
    out["calibration_curve.png"] = fig

    fig, ax = plt.subplots(figsize=(5, 4))
    metrics.ConfusionMatrixDisplay.from_predictions(
        y_test, (np.asarray(probability) >= threshold).astype(int), ax=ax, colorbar=False
    )
    ax.set_title(f"Confusion matrix at threshold {threshold:.3f}")
    out["confusion_matrix.png"] = fig

    # Permutation importance works the same for every classifier and speaks in the raw input
    # columns an APEX form sends, not in one-hot features.
    sample = x_test.sample(n=min(len(x_test), 2000), random_state=seed)
    importance = permutation_importance(
        pipeline,
        sample,
        y_test.loc[sample.index],
        scoring="roc_auc",
        n_repeats=3,
        random_state=seed,
    )
    order = np.argsort(importance.importances_mean)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(order) + 1.2))
    ax.barh(
        np.array(sample.columns)[order],
        importance.importances_mean[order],
        xerr=importance.importances_std[order],
    )
    ax.set_xlabel("drop in ROC AUC when the column is shuffled")
    ax.set_title("Feature importance (permutation, test)")
    fig.tight_layout()
    out["feature_importance.png"] = fig
    return out
