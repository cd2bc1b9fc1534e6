"""`python -m serving.validate <model dir>`: load a model and predict its input example.

Runs in its own process so a model that crashes, hangs or leaks while loading never touches a
serving worker. Exit 0 and one JSON line on success; exit 1 and one line saying why otherwise.
"""

from __future__ import annotations

import json
import sys
import time


def check(model_path: str) -> dict:
    import mlflow

    started = time.perf_counter()
    model = mlflow.pyfunc.load_model(model_path)
    example = model.input_example
    if example is None:
        raise ValueError("the model has no input example to check it with")
    prediction = model.predict(example)
    if len(prediction) != len(example):
        raise ValueError(f"{len(prediction)} predictions for {len(example)} example rows")
    return {"ok": True, "rows": len(example), "seconds": round(time.perf_counter() - started, 3)}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m serving.validate <model directory>", file=sys.stderr)
        return 2
    try:
        print(json.dumps(check(argv[0])))
    except Exception as error:  # noqa: BLE001 - any failure of the model disqualifies it
        message = str(error).strip().splitlines()
        print(f"model check failed: {type(error).__name__}: {message[0] if message else ''}"[:400])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
