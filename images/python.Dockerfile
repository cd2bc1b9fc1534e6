# The project's three Python images, one target each, built from the repository root:
#   docker build -f images/python.Dockerfile --target trainer      -t credit-risk/trainer .
#   docker build -f images/python.Dockerfile --target mlflow       -t credit-risk/mlflow .
#   docker build -f images/python.Dockerfile --target model-server -t credit-risk/model-server .
# One file because the three share one runtime base and one list of pins (pyproject.toml, read
# by images/requirements.py): the trainer and MLflow share one virtualenv, the model server
# gets a smaller one with mlflow-skinny of the same version. Each image copies only the project
# packages it runs (the model server: serving/ and common/).
# Each runs as uid 10001 on a read-only root (writable paths on volumes or a /tmp tmpfs) in the
# image's Python: no environment is ever created per model.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
# checkov:skip=CKV_DOCKER_7: the base is pinned by ARG BASE_IMAGE (an exact tag above); checkov cannot resolve build arguments

# --- deps: the virtualenvs of dependencies, read from pyproject.toml alone ------------------
# (images/requirements.py), so a code change does not reinstall them. Test suites of the
# dependencies (about 120 MB) are never run in the image.
FROM ${BASE_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY images/requirements.py images/
RUN python3 -m venv /opt/venv \
 && python3 images/requirements.py all >/tmp/requirements.txt \
 && /opt/venv/bin/pip install --quiet -r /tmp/requirements.txt \
 && find /opt/venv/lib -type d -name tests -prune -exec rm -rf {} +

# MLflow's basic-auth app needs Flask-WTF (the mlflow[auth] extra); only the tracking server runs it.
FROM deps AS deps-mlflow
# The pin is the `tracking` extra of pyproject.toml, its one owner.
RUN python3 images/requirements.py tracking >/tmp/tracking.txt \
 && /opt/venv/bin/pip install --quiet -r /tmp/tracking.txt

# The model server's own, smaller virtualenv: mlflow-skinny (pyfunc and its scoring server) and
# what serving imports (psycopg too: the decision log's PostgreSQL writer), without the tracking
# server or plotting. Nothing
# installs packages at run time: pip and setuptools go, and so do C headers, Cython sources and
# type stubs. Bytecode only for what the model server imports (images/warm_up.py).
FROM ${BASE_IMAGE} AS deps-serving
# PARQUET=1 adds pyarrow (130 MB), needed only with SERVING_ACCEPT_PARQUET=true.
ARG PARQUET=0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY images/requirements.py images/
RUN python3 -m venv /opt/venv \
 && if [ "$PARQUET" = 1 ]; then python3 images/requirements.py model-server --with pyarrow; \
    else python3 images/requirements.py model-server; fi >/tmp/requirements.txt \
 && /opt/venv/bin/pip install --quiet --no-compile -r /tmp/requirements.txt \
 && /opt/venv/bin/pip uninstall --quiet -y pip setuptools \
 && find /opt/venv/lib -type d \( -name tests -o -name include -o -name __pycache__ \) -prune -exec rm -rf {} + \
 && find /opt/venv/lib -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.pyi' \
      -o -name '*.h' -o -name '*.hpp' -o -name '*.cc' -o -name '*.cpp' \) -delete
COPY images/warm_up.py images/
COPY common/ /src/app/common/
COPY serving/ /src/app/serving/
RUN PYTHONPATH=/src/app /opt/venv/bin/python images/warm_up.py \
 && rm -rf /src/app/common/__pycache__ /src/app/serving/__pycache__

# --- runtime base: the non-root user and the Python environment ------------------------------
FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN groupadd --system --gid 10001 app \
 && useradd --uid 10001 --gid app --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin app
# The project's packages are plain folders under /opt/app: each image copies only its own.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /tmp

# --- trainer: a one-shot job: wait for MLflow, train, register, promote (training/README.md) --
FROM runtime AS trainer
ARG REVISION=unknown
LABEL org.opencontainers.image.title="credit-risk trainer" \
      org.opencontainers.image.description="Trains, registers and promotes the credit-risk model in MLflow, then exits"
COPY --from=deps /opt/venv /opt/venv
# serving/ too: the trainer checks a candidate with the model server's own loading code.
COPY common/ /opt/app/common/
COPY training/ /opt/app/training/
COPY serving/ /opt/app/serving/
ENV GIT_REVISION=${REVISION}
USER 10001:10001
# A job has no port: healthy while the tracking server it works against answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; from training.registry import DEFAULT_TRACKING_URI as d; u.urlopen(os.environ.get('MLFLOW_TRACKING_URI', d).rstrip('/') + '/health', timeout=4)"]
CMD ["python", "-m", "training.job"]

# --- mlflow: tracking server and UI: `python -m tracking` (tracking/README.md) -------------
# The one entry point: it creates the auth database and the stack's users, writes the
# basic-auth ini to the /tmp tmpfs and execs `mlflow server` with --serve-artifacts and the
# basic-auth app. It is built here because the tracking server is the training side's system
# of record (experiments, runs, registry, the data scientists' UI); the model server only reads it.
FROM runtime AS mlflow
LABEL org.opencontainers.image.title="credit-risk MLflow tracking server" \
      org.opencontainers.image.description="MLflow tracking server, registry and UI with basic auth, PostgreSQL store and served artifacts"
RUN install -d -o app -g app -m 0750 /mlflow /mlflow/artifacts
COPY --from=deps-mlflow /opt/venv /opt/venv
COPY common/ /opt/app/common/
COPY tracking/ /opt/app/tracking/
# What a container needs unlike the native defaults of tracking/settings.py; the store and the
# passwords come from compose's .env or the Kubernetes Secrets. A container never migrates the
# schema by itself: compose's mlflow-migrate service and the Kubernetes init container run
# `python -m tracking migrate` first; the server only checks (tracking/migrate.py).
ENV TRACKING_AUTH=true \
    TRACKING_UPGRADE_DB=false \
    TRACKING_HOST=0.0.0.0 \
    TRACKING_ARTIFACTS_DESTINATION=/mlflow/artifacts \
    TRACKING_RUNTIME_DIR=/tmp/mlflow
USER 10001:10001
EXPOSE 5000
# /health is the one route the auth app and the allowed-hosts check leave open.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; from common.facts import MLFLOW_PORT as p; u.urlopen('http://127.0.0.1:%s/health' % (os.environ.get('TRACKING_PORT') or p), timeout=4)"]
CMD ["python", "-m", "tracking"]

# --- model-server: `python -m serving`, following models:/credit-risk@champion (serving/README.md)
FROM runtime AS model-server
LABEL org.opencontainers.image.title="credit-risk model server" \
      org.opencontainers.image.description="MLflow pyfunc scoring server under gunicorn, follows the @champion alias"
RUN install -d -o app -g app -m 0750 /var/cache/model-server
COPY --from=deps-serving /opt/venv /opt/venv
# The model server's code and the shared facts; nothing of training or the tracking server.
COPY common/ /opt/app/common/
COPY serving/ /opt/app/serving/
ENV SERVING_HOST=0.0.0.0 \
    SERVING_CACHE_DIR=/var/cache/model-server \
    SERVING_METRICS_DIR=/tmp/metrics
USER 10001:10001
EXPOSE 8080
# Ready only once a worker has loaded the model and predicted its input example.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; from serving.settings import load_settings as s; u.urlopen('http://127.0.0.1:%d/healthz/ready' % s().port, timeout=4)"]
CMD ["python", "-m", "serving"]
