"""A test model (models-from-code) that fails on one value and answers params.

Row-wise like the real pipeline: probability x / (1 + x), label 1 for kind "b". It raises on
x == 13 (a contract-valid value), so a merged call holding that row fails and the batcher
must isolate it; with `params={"reasons": n}` (declared in its signature) it adds a `reasons`
column, like the reason codes of the credit-risk model.
"""

import mlflow
import pandas as pd

POISON = 13.0


class PickyModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        x = model_input["x"].astype(float)
        if (x == POISON).any():
            raise ValueError("the picky model refuses this row")
        out = pd.DataFrame({"probability": x / (1 + x), "label": (model_input["kind"] == "b")})
        out["label"] = out["label"].astype("int64")
        reasons = (params or {}).get("reasons", 0)
        if reasons:
            out["reasons"] = [f"{kind}:{reasons}" for kind in model_input["kind"]]
        return out


mlflow.models.set_model(PickyModel())
