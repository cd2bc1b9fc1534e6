"""The scikit-learn pipeline: preprocessing plus a classifier chosen by name."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CLASSIFIERS = ("hgb", "logreg")


def build_pipeline(
    classifier: str,
    numeric_columns: tuple[str, ...],
    categorical_columns: tuple[str, ...],
    seed: int = 42,
) -> Pipeline:
    """Impute and scale numerics, one-hot encode categoricals, then classify.

    Unknown categories at prediction time are encoded as all zeros (``handle_unknown="ignore"``)
    rather than failing: an APEX form may offer a value the training data never saw.
    """
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=10)),
        ]
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", numeric, list(numeric_columns)),
            ("categorical", categorical, list(categorical_columns)),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("classifier", _classifier(classifier, seed))])


def _classifier(name: str, seed: int):
    if name == "hgb":
        return HistGradientBoostingClassifier(
            learning_rate=0.06,
            max_iter=300,
            max_leaf_nodes=31,
            l2_regularization=1.0,
            early_stopping=True,
            validation_fraction=0.1,
            random_state=seed,
        )
    if name == "logreg":
        return LogisticRegression(max_iter=2000, C=1.0)
    raise ValueError(f"unknown classifier '{name}'; choose one of {', '.join(CLASSIFIERS)}")
