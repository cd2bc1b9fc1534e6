# MLflow tracking server and UI image: `python -m training.tracking_server` runs `mlflow server`
# with the PostgreSQL backend store, --serve-artifacts from a volume and the basic-auth app.
# Build from the repository root:
#   docker build -f training/mlflow-server.Dockerfile -t credit-risk/mlflow .
# It sits in training/ because the tracking server is the training side's system of record
# (experiments, runs, registry, the data scientists' UI); the model server only reads it.
# Runs as uid 10001 on a read-only root: artifacts on a volume, /tmp a tmpfs.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
# checkov:skip=CKV_DOCKER_7: the base is pinned by ARG BASE_IMAGE (an exact tag above); checkov cannot resolve build arguments

# --- build: one virtualenv with the project and its dependencies -----------------------------
# This stage is the same text in training/Dockerfile, serving/Dockerfile and
# training/mlflow-server.Dockerfile, so a build of all three installs the dependencies once.
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
# Dependencies first, read from pyproject.toml alone, so a code change does not reinstall them.
RUN python3 -m venv /opt/venv \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" >/tmp/requirements.txt \
 && /opt/venv/bin/pip install --quiet -r /tmp/requirements.txt
COPY training/ training/
COPY serving/ serving/
# Test suites of the dependencies (about 120 MB) are never run in the image.
RUN /opt/venv/bin/pip install --quiet --no-deps . \
 && rm -rf build ./*.egg-info \
 && find /opt/venv/lib -type d -name tests -prune -exec rm -rf {} +
# MLflow's basic-auth app needs Flask-WTF (the mlflow[auth] extra).
RUN /opt/venv/bin/pip install --quiet "flask-wtf~=1.3.0"

# --- runtime ------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="credit-risk MLflow tracking server" \
      org.opencontainers.image.description="MLflow tracking server, registry and UI with basic auth, PostgreSQL store and served artifacts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN groupadd --system --gid 10001 app \
 && useradd --uid 10001 --gid app --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin app \
 && install -d -o app -g app -m 0750 /mlflow /mlflow/artifacts
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    TRACKING_ARTIFACTS_DIR=/mlflow/artifacts \
    TRACKING_RUNTIME_DIR=/tmp/mlflow \
    TRACKING_PORT=5000
USER 10001:10001
WORKDIR /tmp
EXPOSE 5000
# /health is the one route the auth app and the allowed-hosts check leave open.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('TRACKING_PORT', '5000'), timeout=4)"]
CMD ["python", "-m", "training.tracking_server"]
