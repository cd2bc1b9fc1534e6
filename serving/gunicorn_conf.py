"""gunicorn configuration, the same natively, in the container image and on Kubernetes.

Values come from the typed settings (SERVING_* variables), never from a copy of this file.
"""

import os

from prometheus_client import multiprocess

from serving.balance import ConnectionTable
from serving.metrics import WORKER_SLOT_VARIABLE
from serving.settings import load_settings

_settings = load_settings()

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers
worker_class = "serving.worker.ModelServerWorker"
# No preload: on SIGHUP each new worker must load the model the supervisor just checked.
preload_app = False
# A worker silent this long is killed; predictions themselves time out earlier (504).
timeout = int(_settings.request_timeout) + 30
graceful_timeout = 30
# Longer than the gateway's upstream keep-alive, so nginx, not gunicorn, closes idle
# connections and never sends a request on a connection the server is closing.
keepalive = _settings.keepalive
# The wrapper writes one JSON access line per request with the request id.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level
proc_name = "model-server"

# One native thread per worker: each worker is one process on one core, and the processes are
# the parallelism. With OpenMP's default (one thread per core) every HistGradientBoosting
# predict starts a team whose idle threads then spin, burning CPU the other worker, nginx and
# the client need (bench/README.md, tuning log). Set before numpy and scikit-learn load, which
# is when the runtimes read it; a value set by the operator wins.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# Import the heavy libraries once in the master: forked workers start with them loaded, which
# keeps the window of a graceful reload short. The model itself is loaded per worker.
import mlflow.pyfunc.scoring_server  # noqa: E402, F401
import sklearn.ensemble  # noqa: E402, F401

# Open connections per worker slot, shared with the workers forked below (serving/balance.py).
# A reload (SIGHUP) reads this file again: the new workers share a new table, the old ones
# only finish their requests.
connections = ConnectionTable() if _settings.balanced_accept else None


def pre_fork(server, worker):
    """Give the new worker the lowest slot number no live worker holds (for /metrics)."""
    taken = {getattr(other, "slot", None) for other in server.WORKERS.values()}
    worker.slot = next(slot for slot in range(len(taken) + 1) if slot not in taken)


def post_fork(server, worker):
    # In the worker, before it loads the app: serving/metrics.py labels its series with it.
    os.environ[WORKER_SLOT_VARIABLE] = str(worker.slot)
    if connections is not None:
        connections.join(worker.slot)
        worker.connections = connections


def child_exit(server, worker):
    """Drop a dead worker's live gauges, so /metrics only counts live workers' values."""
    multiprocess.mark_process_dead(worker.pid)
    if connections is not None:
        connections.leave(worker.slot)
