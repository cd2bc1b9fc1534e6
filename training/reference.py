"""The drift reference a model carries: what its inputs and scores looked like at training.

`log_reference` is called once by training/train.py inside the training run. It logs
`monitoring/reference.parquet` (parquet, no pickle): the validation rows' inputs and the
model's score on them. Validation rows come from the training distribution but were not fitted,
so their scores are what live traffic from the same population gets (scores on the fitted rows
of boosted trees are more extreme). `make monitor` (training/monitor.py) compares a window of
the decision log with it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

REFERENCE_ARTIFACT = "monitoring/reference.parquet"
SCORE_COLUMN = "__score__"
"""The reference's score column (the model's probability); no input column has this name."""
MAX_REFERENCE_ROWS = 20_000


def reference_frame(pipeline, features: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Up to MAX_REFERENCE_ROWS rows of `features` with the pipeline's probability."""
    if len(features) > MAX_REFERENCE_ROWS:
        features = features.sample(MAX_REFERENCE_ROWS, random_state=seed)
    score = pipeline.predict_proba(features)[:, 1]
    return features.reset_index(drop=True).assign(**{SCORE_COLUMN: score})


def log_reference(pipeline, features: pd.DataFrame, seed: int = 0) -> None:
    """Log the reference of the active run (a parquet artifact)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(REFERENCE_ARTIFACT).name
        reference_frame(pipeline, features, seed).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))
