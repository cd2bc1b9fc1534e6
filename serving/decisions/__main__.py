"""`python -m serving.decisions migrate|prune`: the decision log's schema and its retention.

    python -m serving.decisions migrate [--wait 120]  # create the database, the table and
                                                      # the writer role (DECISIONS_WRITER_*)
    python -m serving.decisions prune     # delete rows older than DECISIONS_RETENTION_DAYS

The stack runs `migrate` before the model server starts (compose: the one-shot
`decisions-migrate` service; Kubernetes: an init container of the mlflow Deployment; natively:
the writer's own SQLite file). Natively the model server's writer also prunes, every
DECISIONS_PRUNE_INTERVAL; in compose and Kubernetes its role may only insert, and `prune` runs on
a schedule as the owner (the `decisions-prune` service and CronJob).
Exit status: 0 done, 1 the store failed, 2 bad settings.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

from common.secret_files import read_or_exit
from serving.decisions.settings import SECRET_VARIABLES, load_decision_settings
from serving.decisions.stores import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.decisions", description=__doc__)
    parser.add_argument("command", choices=("migrate", "prune"))
    parser.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="retry an unreachable store this long (PostgreSQL may still be starting)",
    )
    args = parser.parse_args(argv)
    read_or_exit(SECRET_VARIABLES)  # NAME_FILE secrets (compose, common/secret_files.py)
    try:
        settings = load_decision_settings()
    except SystemExit as error:
        print(error, file=sys.stderr)
        return 2
    store = settings.open_store()
    try:
        if args.command == "migrate":
            if _reachable(store, args.wait):
                print(f"decision log: created the database {store.where}", flush=True)
            print(f"decision log: {store.migrate()}", flush=True)
            if settings.writer_password is not None:
                password = settings.writer_password.get_secret_value()
                print(f"decision log: {store.grant_writer(settings.writer_role, password)}")
        else:
            cutoff = datetime.now(UTC) - timedelta(days=settings.retention_days)
            print(f"decision log: deleted {store.prune(cutoff)} rows older than {cutoff:%Y-%m-%d}")
    except StoreError as error:
        print(f"decision log: {error}; check DECISIONS_STORE_URI", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _reachable(store, wait: float) -> bool:
    """`store.ensure_database()`, retried every 2 s for `wait` seconds while unreachable."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return store.ensure_database()
        except StoreError as error:
            if time.monotonic() >= deadline or "cannot be created" in str(error):
                raise
            time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
