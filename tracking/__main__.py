"""`python -m tracking`: start the MLflow tracking server (tracking/server.py).

`python -m tracking migrate`: only migrate the stores, then exit (tracking/migrate.py).
"""

import sys

if sys.argv[1:] == ["migrate"]:
    from tracking.migrate import main
elif sys.argv[1:]:
    print("usage: python -m tracking [migrate]", file=sys.stderr)
    sys.exit(2)
else:
    from tracking.server import main

sys.exit(main())
