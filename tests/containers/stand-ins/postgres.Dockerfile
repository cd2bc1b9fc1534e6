# CI stand-in for postgres:17.x-bookworm, from Debian 12's postgresql-15 (the newest Debian has),
# with an entry point that honours the variables of the upstream image's that the compose stack
# uses (POSTGRES_USER, POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, POSTGRES_DB, PGDATA), also
# under a uid it does not know (Kubernetes' runAsUser: nss_wrapper, as upstream).
# The data directory is 1777 like upstream's, so any uid can initialise PGDATA below it (Kubernetes
# runs it as 10001; a new volume takes the directory's mode). /run/postgresql is left to the compose file's tmpfs (podman keeps root's 0755 on a tmpfs
# mounted over an existing directory).
# checkov:skip=CKV_DOCKER_2: CI-only stand-in for the upstream postgres image; compose defines its healthcheck (pg_isready)
FROM localhost/debian-base:bookworm
# Versions come from the bookworm release the base was bootstrapped from (CI-only image).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 libnss-wrapper \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data \
 && rm -rf /run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# Debian assigns the postgres uid at install time; the name is what is stable.
# hadolint ignore=DL3066
USER postgres
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
