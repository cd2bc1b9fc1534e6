"""`python -m tracking`: start the MLflow tracking server (tracking/server.py)."""

import sys

from tracking.server import main

sys.exit(main())
