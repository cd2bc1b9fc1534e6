"""`python -m tracking`: start the MLflow tracking server (tracking/server.py).

`python -m tracking migrate`: only migrate the stores, then exit (tracking/migrate.py).
"""

import sys

from common.secret_files import read_or_exit

# Secrets may come as files (compose `secrets:`): NAME_FILE is read into NAME before the
# settings or MLflow read NAME (common/secret_files.py).
read_or_exit(
    [
        "TRACKING_BACKEND_STORE_URI",
        "TRACKING_DB_PASSWORD",
        "TRACKING_TRAINER_PASSWORD",
        "TRACKING_MODEL_SERVER_PASSWORD",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
    ]
)

if sys.argv[1:] == ["migrate"]:
    from tracking.migrate import main
elif sys.argv[1:]:
    print("usage: python -m tracking [migrate]", file=sys.stderr)
    sys.exit(2)
else:
    from tracking.server import main

sys.exit(main())
