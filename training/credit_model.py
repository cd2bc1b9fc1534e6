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

This file must stay self-contained: MLflow executes it on load, without the `training` package.
"""

import mlflow
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


class CreditRiskModel(mlflow.pyfunc.PythonModel):
    """Probability of default and label for each applicant row."""

    def load_context(self, context):
        self.pipeline = skops.io.load(context.artifacts[PIPELINE_ARTIFACT], trusted=TRUSTED_TYPES)
        self.threshold = float((context.model_config or {}).get("threshold", 0.5))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        # MLflow lets a caller leave out optional (nullable) columns; they are missing values,
        # which the pipeline imputes, so add them back as such.
        columns = self.pipeline.feature_names_in_
        probability = self.pipeline.predict_proba(model_input.reindex(columns=columns))[:, 1]
        return pd.DataFrame(
            {
                "probability": probability.round(6),
                "label": (probability >= self.threshold).astype("int64"),
            }
        )


mlflow.models.set_model(CreditRiskModel())
