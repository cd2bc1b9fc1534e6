# CI stand-in for python:3.11.x-slim-bookworm, built from Debian packages because the CI machine
# reaches no container registry (shared/docs/containers-without-docker.md). Debian 12 ships
# Python 3.11. Never used in production: the real Dockerfiles default to the upstream image.
# Like the slim image it stands for, it carries no documentation, manual pages or translations.
# checkov:skip=CKV_DOCKER_2: a base-image stand-in, not a service; the images built on it have their own HEALTHCHECK
# checkov:skip=CKV_DOCKER_3: a base-image stand-in like python:3.11-slim (which runs as root too); the images built on it switch to uid 10001
FROM localhost/debian-base:bookworm
# Versions come from the bookworm release the base was bootstrapped from (CI-only image).
# The upstream Debian images keep no apt cache (their /etc/apt/apt.conf.d/docker-clean); the
# same setting here, or every image on this base carries 90 MB of package indexes the real
# base does not have, and image sizes measured in CI would not be the real ones.
COPY docker-clean.conf /etc/apt/apt.conf.d/docker-clean
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/*
# The CI host's CA bundle: pip in the image builds reaches PyPI through the host's TLS setup.
# The ENV is inherited by the build stages of the real Dockerfiles, which know nothing of CI.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
