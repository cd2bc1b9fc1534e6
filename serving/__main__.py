"""`python -m serving`: run the model server (supervisor + gunicorn)."""

import sys

from common.secret_files import read_or_exit

# The registry password may come as a file (compose `secrets:`, common/secret_files.py).
read_or_exit(["MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"])

from serving.supervisor import main  # noqa: E402 - after the secrets are in place

sys.exit(main())
