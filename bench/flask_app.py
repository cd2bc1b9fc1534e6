"""System (a): the tutorial's minimal Flask app, serving the same pipeline from a joblib file.

Started the way the tutorial does: `joblib.load` of the pipeline, one route, `app.run()`
(Werkzeug's development server, threaded, one process). It takes the same `dataframe_records`
bodies as the model server, so every system gets the same payload files, and answers the
probability of default per row.

    python -m bench.flask_app MODEL_JOBLIB PORT
"""

import sys

import joblib
import pandas as pd
from flask import Flask, jsonify, request

app = Flask(__name__)
model = None


@app.route("/predict", methods=["POST"])
def predict():
    frame = pd.DataFrame(request.get_json()["dataframe_records"])
    probability = model.predict_proba(frame[model.feature_names_in_])[:, 1]
    return jsonify({"predictions": [{"probability": round(float(p), 6)} for p in probability]})


@app.route("/ping")
def ping():
    return "ok"


if __name__ == "__main__":
    model = joblib.load(sys.argv[1])
    app.run(host="127.0.0.1", port=int(sys.argv[2]))
