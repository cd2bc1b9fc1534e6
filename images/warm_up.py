"""Import what the model server runs, so the image keeps bytecode for exactly those modules.

The model-server image installs its dependencies without bytecode (pip --no-compile: about
100 MB of .pyc for modules serving never imports), then runs this once at build time with
bytecode writing on: the modules the model server, gunicorn, uvicorn and the pyfunc scoring
server import at start get their __pycache__, the rest compile in memory if ever imported
(the root is read-only at run time). An import that fails here fails the build.
"""

import importlib
import importlib.util
import pkgutil
import sys

import serving

MODULES = [
    # What serving/gunicorn_conf.py preloads and the models (training/credit_model.py) import.
    "mlflow.pyfunc",
    "mlflow.pyfunc.scoring_server",
    "mlflow.models",
    "skops.io",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "gunicorn.app.base",
    "gunicorn.arbiter",
    "uvicorn",
    "uvicorn_worker",
    "uvloop",
    "httptools",
    "prometheus_client.multiprocess",
    # The decision log's PostgreSQL writer (serving/decisions/stores.py imports it lazily).
    "psycopg",
]

if importlib.util.find_spec("pyarrow") is not None:  # the PARQUET=1 build only
    MODULES.append("pyarrow.parquet")

if __name__ == "__main__":
    own = [f"serving.{m.name}" for m in pkgutil.iter_modules(serving.__path__)]
    for name in [m for m in own if m != "serving.__main__"] + MODULES:
        importlib.import_module(name)
    print(f"warm-up: {len(sys.modules)} modules imported")
