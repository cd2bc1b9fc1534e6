"""`python -m serving.validate <model dir>`: load a model and predict its input example.

Runs in its own process so a model that crashes, hangs or leaks while loading never touches a
serving worker. Exit 0 and one JSON line on success; exit 1 and one line saying why otherwise.
The check itself is serving/loading.py `load_and_check`, the same one the workers and
promotion run.
"""

from __future__ import annotations

import json
import sys

from serving.loading import ModelCheckFailed, load_and_check, short_reason


def check(model_path: str) -> dict:
    """Load and check the model; what passed, as the JSON line to print."""
    model, seconds = load_and_check(model_path)
    return {"ok": True, "rows": len(model.input_example), "seconds": round(seconds, 3)}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m serving.validate <model directory>", file=sys.stderr)
        return 2
    try:
        print(json.dumps(check(argv[0])))
    except ModelCheckFailed as failure:
        print(f"model check failed: {failure}"[:400])
        return 1
    except Exception as error:  # noqa: BLE001 - any failure of the model disqualifies it
        print(f"model check failed: {short_reason(error)}"[:400])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
