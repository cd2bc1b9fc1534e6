"""A test model (models-from-code) that passes its check and raises on live traffic.

It answers its own input example (the rows whose `annual_income` is in the model config's
`example_incomes`), so the supervisor's check passes and it becomes the shadowed challenger;
on any other row it raises, as a challenger with a bug that only real traffic finds would.
"""

import mlflow
import pandas as pd


class RaisingOnLiveRows(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.example_incomes = set((context.model_config or {}).get("example_incomes", []))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not set(model_input["annual_income"].astype(float)) <= self.example_incomes:
            raise RuntimeError("shadow bug on purpose: secret challenger internals")
        rows = len(model_input)
        return pd.DataFrame({"probability": [0.5] * rows, "label": [0] * rows})


mlflow.models.set_model(RaisingOnLiveRows())
