"""Secrets as files: `NAME_FILE=/run/secrets/x` instead of `NAME=<the secret>`.

Why: a secret passed as a container's environment variable is printed by `docker inspect`,
`podman inspect` and `docker compose config`, and sits in the container's definition. Compose
`secrets:` (docker-compose.yml) mount each secret as a file under /run/secrets instead, and the
service is given only the file's path. Each entry point calls `read_secret_files` with the
variables it knows before anything reads them (its typed settings, MLflow's client), so the
secret lives in the process's memory and environment only (readable by the same user alone).

`python -m common.secret_files generate DIR` writes the compose stack's secrets (random, never
overwritten: delete a file and restart to rotate what may be rotated; tracking/README.md says
which) so that `make compose-secrets` needs no editing by hand.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import MutableMapping, Sequence
from pathlib import Path

# The compose stack's secrets: the file name under the secrets folder, and what it is.
COMPOSE_SECRETS = {
    "postgres-password": "PostgreSQL superuser `mlflow` (tracking and auth stores)",
    "mlflow-admin-password": "MLflow `admin`, set on the first start only",
    "mlflow-secret-key": "the MLflow auth app's CSRF key",
    "mlflow-trainer-password": "MLflow `trainer` (set at every MLflow start)",
    "mlflow-model-server-password": "MLflow `model-server`, read-only (set at every start)",
    "decisions-writer-password": "PostgreSQL `decisions_writer`, the model server's INSERT-only "
    "role on the decision log (set at every decisions-migrate run)",
    "decisions-hash-key": "the decision log's HMAC key (DECISIONS_MODE=hashed only)",
}


class SecretFileError(RuntimeError):
    """A NAME_FILE that cannot be read; the message names the variable and what to do."""


def read_secret_files(
    names: Sequence[str], environ: MutableMapping[str, str] | None = None
) -> list[str]:
    """For each NAME whose NAME_FILE is set, read that file into NAME; return the names read.

    The file's content without its trailing newline is the secret. Setting both NAME and
    NAME_FILE is refused: which one wins would be a guess.
    """
    environ = os.environ if environ is None else environ
    done = []
    for name in names:
        path = environ.get(f"{name}_FILE")
        if not path:
            continue
        if environ.get(name):
            raise SecretFileError(f"{name} and {name}_FILE are both set; set only one of them")
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise SecretFileError(
                f"{name}_FILE={path} cannot be read ({reason}); mount the secret file there "
                "or unset the variable"
            ) from None
        if not value:
            raise SecretFileError(f"{name}_FILE={path} is empty; write the secret into it")
        environ[name] = value
        done.append(name)
    return done


def read_or_exit(names: Sequence[str]) -> None:
    """`read_secret_files` for an entry point: one line on stderr and exit 2 on an error."""
    try:
        read_secret_files(names)
    except SecretFileError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def generate(folder: Path) -> list[Path]:
    """Create the compose stack's missing secret files in `folder`; return those created.

    The folder is 0700 (only its owner reaches the files on the host); the files are 0644
    because compose bind-mounts them as they are and each service runs as its own non-root
    uid, which must read its file inside the container.
    """
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    created = []
    for name in COMPOSE_SECRETS:
        path = folder / name
        if path.exists():
            continue
        partial = path.with_name(f".{name}.partial")
        partial.write_text(secrets.token_hex(24) + "\n", encoding="utf-8")
        partial.chmod(0o644)
        partial.rename(path)  # nothing half-written under the real name
        created.append(path)
    return created


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "generate":
        print("usage: python -m common.secret_files generate DIR", file=sys.stderr)
        return 2
    folder = Path(args[1])
    try:
        created = generate(folder)
    except OSError as error:
        print(f"error: cannot write secrets in {folder}: {error.strerror}", file=sys.stderr)
        return 1
    for path in created:
        print(f"created {path} ({COMPOSE_SECRETS[path.name]})")
    if not created:
        print(f"all {len(COMPOSE_SECRETS)} secrets exist in {folder}; none changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
