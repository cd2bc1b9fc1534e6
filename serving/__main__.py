"""`python -m serving`: run the model server (supervisor + gunicorn)."""

import sys

from common.secret_files import read_or_exit
from serving.decisions.settings import SECRET_VARIABLES as DECISION_SECRETS

# The registry password and the decision store's URI or password may come as files (compose
# `secrets:`, common/secret_files.py).
read_or_exit(["MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", *DECISION_SECRETS])

from serving.supervisor import main  # noqa: E402 - after the secrets are in place

sys.exit(main())
