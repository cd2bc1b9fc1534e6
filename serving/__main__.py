"""`python -m serving`: run the model server (supervisor + gunicorn)."""

import sys

from serving.supervisor import main

sys.exit(main())
