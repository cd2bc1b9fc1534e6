"""A test model (models-from-code) that sleeps 10 ms per row: the timeout and overload tests
need predictions that take seconds without burning CPU."""

import time

import mlflow
import pandas as pd


class SlowModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        time.sleep(0.01 * len(model_input))
        rows = len(model_input)
        return pd.DataFrame({"probability": [0.5] * rows, "label": [0] * rows})


mlflow.models.set_model(SlowModel())
