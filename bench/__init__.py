"""The benchmark: the stack against `mlflow models serve` and the tutorial's Flask app (issue 8)."""
