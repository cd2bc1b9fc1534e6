"""What the server serves, shared by the supervisor and the workers through one JSON file.

The supervisor is the only writer; it replaces the file atomically (write, fsync, rename), so a
worker that boots during a swap reads either the old or the new record, never half of one. The
same file, kept in the cache directory, is the last-known-good record after a restart.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class SwapFailure:
    version: str
    reason: str
    at: str


@dataclass
class ShadowModel:
    """The checked `@challenger` version the workers load next to the champion (shadow.py)."""

    version: str
    alias: str
    run_id: str | None
    path: str
    resolved_at: str


@dataclass
class ServedModel:
    """The model version the workers load, and the history of swaps around it."""

    name: str
    version: str
    alias: str | None
    run_id: str | None
    path: str
    source: str  # "registry", or "cache" when started while the registry was unreachable
    resolved_at: str
    swap_failures: int = 0
    last_swap_failure: SwapFailure | None = None
    swaps: int = 0
    extra: dict = field(default_factory=dict)
    # Shadow scoring (SHADOW_SHARE > 0): the challenger the workers load, or None; and the
    # challenger versions that failed their check (never loaded; the champion is unaffected).
    challenger: ShadowModel | None = None
    challenger_failures: int = 0
    last_challenger_failure: SwapFailure | None = None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, delete=False, prefix=".state-"
        ) as handle:
            json.dump(asdict(self), handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)

    @classmethod
    def read(cls, path: Path) -> ServedModel:
        data = json.loads(path.read_text())
        failure = data.pop("last_swap_failure", None)
        challenger = data.pop("challenger", None)
        challenger_failure = data.pop("last_challenger_failure", None)
        return cls(
            **data,
            last_swap_failure=SwapFailure(**failure) if failure else None,
            challenger=ShadowModel(**challenger) if challenger else None,
            last_challenger_failure=SwapFailure(**challenger_failure)
            if challenger_failure
            else None,
        )
