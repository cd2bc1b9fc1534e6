"""The MLflow tracking server's start-up: one entry point for every way it is started."""
