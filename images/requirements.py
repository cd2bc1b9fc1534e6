"""Print the pip requirements of one image, from pyproject.toml (the one owner of every pin).

    python3 images/requirements.py all            # [project] dependencies (trainer, mlflow)
    python3 images/requirements.py tracking       # the `tracking` extra (the MLflow image adds it)
    python3 images/requirements.py model-server   # what the model server needs, nothing more
    python3 images/requirements.py model-server --with pyarrow   # plus an excluded one

The model server serves pyfunc models through MLflow's scoring server, which mlflow-skinny
carries (same version as the `mlflow` pin: the tracking client, pyfunc, FastAPI/uvicorn), so it
gets mlflow-skinny instead of mlflow (no tracking server, UI, SQLAlchemy/alembic, Flask, docker
client) and drops what only training or the tracking server use
([tool.image-requirements] in pyproject.toml). Standard library only: it runs in the image
build before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_NAME = re.compile(r"^[A-Za-z0-9._-]+")


def requirements(target: str, pyproject: Path = PYPROJECT, keep: tuple[str, ...] = ()) -> list[str]:
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    if target == "all":
        return list(project["dependencies"])
    if target == "tracking":
        return list(project["optional-dependencies"]["tracking"])
    if target != "model-server":
        raise SystemExit(f"requirements: unknown target {target!r} (all, tracking, model-server)")
    excluded = set(data["tool"]["image-requirements"]["model-server-excludes"]) - set(keep)
    out = []
    for requirement in project["dependencies"]:
        name = _NAME.match(requirement)[0].lower()
        if name in excluded:
            continue
        if name == "mlflow":
            requirement = "mlflow-skinny" + requirement[len(name) :]
        out.append(requirement)
    return out


if __name__ == "__main__":
    args = sys.argv[1:] or ["all"]
    keep = tuple(args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--with")
    print("\n".join(requirements(args[0], keep=keep)))
