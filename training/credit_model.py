"""The served model, logged with MLflow's models-from-code.

Why models-from-code and skops instead of the default pickle of a Python object: a pickle runs
arbitrary code when it is loaded, and the model server loads whatever the registry's
`@champion` points at. Here MLflow stores this source file as text, and the fitted scikit-learn
pipeline is stored in skops format, which refuses to build any type that is not on the reviewed
list below. Loading a tampered artifact fails instead of executing it.

The model answers one row per input row, in order: the probability of default and the label
given by the decision threshold chosen on validation data (stored in the model config).
MLflow's scoring server turns that frame into `{"predictions": [{"probability": ..,
"label": ..}, ...]}`.

Reason codes (opt-in): a request with MLflow's `params` `{"reasons": N}` (declared in the
signature, default 0) adds a `reasons` list to every row: up to N input columns that raised the
risk most, as `{code, column, text, contribution}`, largest first, positive contributions only.
A contribution is the column's share of the row's log-odds above the reference population's
mean (exact interventional Shapley values; training/explain.py builds the arrays, the README
says which reference). The explainer is plain numpy arrays (`explainer.npz`, loaded without
pickle) and a JSON reason table; computing reasons never changes `probability` or `label`,
and a request without reasons does exactly what it did before.

This file must stay self-contained: MLflow executes it on load, without the `training` package.
"""

import json
import math

import mlflow
import numpy as np
import pandas as pd
import skops.io

# Types beyond skops' built-in trusted set that our pipelines contain. Reviewed: both are plain
# data holders of scikit-learn / numpy with no code-executing state. The trainer refuses to log
# a pipeline that needs anything else, so this list and the training code cannot drift apart.
TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]

PIPELINE_ARTIFACT = "pipeline"
EXPLAINER_ARTIFACT = "explainer"
REASON_TABLE_ARTIFACT = "reason_table"
REASONS_PARAM = "reasons"
# Foreground rows per block of the tree explainer: bounds its working memory (a few arrays of
# leaves x rows x reference rows) to tens of MB whatever the request size.
_BLOCK_CELLS = 2_000_000


class CreditRiskModel(mlflow.pyfunc.PythonModel):
    """Probability of default and label for each applicant row, reasons on request."""

    def load_context(self, context):
        self.pipeline = skops.io.load(context.artifacts[PIPELINE_ARTIFACT], trusted=TRUSTED_TYPES)
        self.threshold = float((context.model_config or {}).get("threshold", 0.5))
        self.explainer = None
        if EXPLAINER_ARTIFACT in context.artifacts:
            with open(context.artifacts[REASON_TABLE_ARTIFACT], encoding="utf-8") as file:
                table = json.load(file)
            self.explainer = Explainer(
                np.load(context.artifacts[EXPLAINER_ARTIFACT], allow_pickle=False), table
            )

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        wanted = self._reasons_wanted(params)
        # MLflow lets a caller leave out optional (nullable) columns; they are missing values,
        # which the pipeline imputes, so add them back as such.
        columns = self.pipeline.feature_names_in_
        frame = model_input.reindex(columns=columns)
        if not wanted:
            probability = self.pipeline.predict_proba(frame)[:, 1]
            return self._answer(probability)
        # One transform for both the score and the explanation; the score is computed exactly
        # as without reasons (the classifier's own predict_proba on the same features).
        features = _dense(self.pipeline[:-1].transform(frame))
        probability = self.pipeline[-1].predict_proba(features)[:, 1]
        answer = self._answer(probability)
        answer[REASONS_PARAM] = self.explainer.reasons(features, wanted)
        return answer

    def _answer(self, probability) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "probability": probability.round(6),
                "label": (probability >= self.threshold).astype("int64"),
            }
        )

    def _reasons_wanted(self, params) -> int:
        value = (params or {}).get(REASONS_PARAM, 0)
        if value is None or value == 0:
            return 0
        limit = len(self.explainer.columns) if self.explainer else 0
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise mlflow.exceptions.MlflowException.invalid_parameter_value(
                f"params.{REASONS_PARAM} must be a whole number from 0 to {limit}"
            )
        if not 0 <= value <= limit:
            raise mlflow.exceptions.MlflowException.invalid_parameter_value(
                f"params.{REASONS_PARAM} must be from 0 to {limit}"
                + ("" if limit else ": this model was logged without reason codes")
            )
        return int(value)


def _dense(matrix):
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix, dtype=float)


class Explainer:
    """Exact Shapley contributions of the input columns to the model's log-odds.

    Arrays (all in `explainer.npz`, built by training/explain.py):
        kind        "tree" (HistGradientBoosting) or "linear" (LogisticRegression)
        columns     the input column names; `group[f]` is the input column of feature f of the
                    transformed matrix (one-hot features of a column share its index)
        reference   the transformed reference rows; `base_value` their mean log-odds
        linear:     coef, intercept
        tree:       per leaf of every tree, its value and the interval (lo, hi] of each feature
                    its path tests (`leaf_feature`, `leaf_lo`, `leaf_hi`; padded with an
                    unbounded interval)
    """

    def __init__(self, arrays, table: dict):
        self.kind = str(arrays["kind"])
        self.columns = [str(c) for c in arrays["columns"]]
        self.base_value = float(arrays["base_value"])
        self.reference = arrays["reference"]
        group = arrays["group"]
        # Features -> input columns: contributions of a one-hot group add up to its column's.
        self.to_columns = np.zeros((len(group), len(self.columns)))
        self.to_columns[np.arange(len(group)), group] = 1.0
        self.entries = [table[column] for column in self.columns]
        if self.kind == "linear":
            self.coef = arrays["coef"]
            self.offset = self.coef * self.reference.mean(axis=0)
            return
        self.leaf_value = arrays["leaf_value"]
        self.leaf_feature = arrays["leaf_feature"]
        self.leaf_lo, self.leaf_hi = arrays["leaf_lo"], arrays["leaf_hi"]
        depth = self.leaf_feature.shape[1]
        # [L, m, D]: does reference row m satisfy leaf L's test on its d-th feature.
        self.z_in = self._inside(self.reference).transpose(1, 0, 2)
        self.z_out = 1.0 - self.z_in
        # Shapley weights of a leaf reached with a features from x and b from the reference:
        # a feature on x's side gains (a-1)! b! / (a+b)!, one on the reference side loses
        # a! (b-1)! / (a+b)! (interventional TreeSHAP, one reference row at a time).
        self.w_x = np.zeros((depth + 1, depth + 1))
        self.w_z = np.zeros((depth + 1, depth + 1))
        fact = math.factorial
        for a in range(depth + 1):
            for b in range(depth + 1):
                if a:
                    self.w_x[a, b] = fact(a - 1) * fact(b) / fact(a + b)
                if b:
                    self.w_z[a, b] = fact(a) * fact(b - 1) / fact(a + b)
        flat = self.leaf_feature.reshape(-1)
        self.slot_to_feature = np.zeros((flat.size, len(group)))
        self.slot_to_feature[np.arange(flat.size), flat] = 1.0

    def _inside(self, features) -> np.ndarray:
        """[n, L, D] as float: row n satisfies leaf L's test on its d-th feature."""
        values = features[:, self.leaf_feature]
        return ((values > self.leaf_lo) & (values <= self.leaf_hi)).astype(float)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """[n, columns]: each input column's contribution; a row's sum plus `base_value` is
        its log-odds."""
        if self.kind == "linear":
            return (features * self.coef - self.offset) @ self.to_columns
        leaves, m, _ = self.z_in.shape
        block = max(1, _BLOCK_CELLS // (leaves * m))
        out = [self._tree_block(features[i : i + block]) for i in range(0, len(features), block)]
        return np.vstack(out) @ self.to_columns if out else np.zeros((0, len(self.columns)))

    def _tree_block(self, features: np.ndarray) -> np.ndarray:
        x_in = self._inside(features).transpose(1, 0, 2)  # [L, n, D]
        x_out = 1.0 - x_in
        # Per leaf, foreground row and reference row: features only x satisfies (a), only the
        # reference satisfies (b), neither (the hybrid path cannot reach the leaf).
        a = x_in @ self.z_out.transpose(0, 2, 1)  # [L, n, m], whole numbers
        b = x_out @ self.z_in.transpose(0, 2, 1)
        reachable = (x_out @ self.z_out.transpose(0, 2, 1)) < 0.5
        value = self.leaf_value[:, None, None] * reachable
        # One flat index into the weight tables: a plain take is far cheaper than a 2-D gather.
        index = np.rint(a * self.w_x.shape[1] + b).astype(np.intp)
        gain = value * np.take(self.w_x, index)
        loss = value * np.take(self.w_z, index)
        # [L, n, D]: x-side features gain, reference-side ones lose, averaged over the
        # reference rows.
        slots = x_in * (gain @ self.z_out) - x_out * (loss @ self.z_in)
        slots /= self.z_in.shape[1]
        n = features.shape[0]
        return slots.transpose(1, 0, 2).reshape(n, -1) @ self.slot_to_feature

    def reasons(self, features: np.ndarray, wanted: int) -> list[list[dict]]:
        """Per row, up to `wanted` entries for the columns that raised the risk most."""
        contributions = self.contributions(features)
        out = []
        for row in contributions:
            # Positive only: a column that lowered the risk is no reason for it. Rounded as
            # answered, so no entry says 0.
            order = [
                i for i in np.argsort(-row, kind="stable")[:wanted] if round(float(row[i]), 4) > 0
            ]
            out.append(
                [
                    {
                        "code": self.entries[i]["code"],
                        "column": self.columns[i],
                        "text": self.entries[i]["text"],
                        "contribution": round(float(row[i]), 4),
                    }
                    for i in order
                ]
            )
        return out


mlflow.models.set_model(CreditRiskModel())
