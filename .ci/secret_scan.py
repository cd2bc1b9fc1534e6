"""`make secret-scan`: detect-secrets over the tracked tree and the whole git history.

A finding passes only when its hash is in .ci/secrets.baseline, where every entry was reviewed
(test passwords, documentation placeholders). Matching is by (file, hash) for the tree and by
hash for the history, never by line number, so moving a reviewed line is not a finding.
Exit 1 and one line per new finding otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

BASELINE = Path(".ci/secrets.baseline")


def scan(paths: list[str], detect_secrets: str) -> dict[str, list[dict]]:
    out = subprocess.run(
        [detect_secrets, "scan", *paths], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)["results"]


def main() -> int:
    detect_secrets = str(Path(sys.executable).parent / "detect-secrets")
    reviewed = json.loads(BASELINE.read_text())["results"]
    known_pairs = {(name, s["hashed_secret"]) for name, found in reviewed.items() for s in found}
    known_hashes = {hashed for _, hashed in known_pairs}
    tracked = subprocess.run(
        ["git", "ls-files", "-z", ":!.ci/secrets.baseline"],
        capture_output=True, text=True, check=True,
    ).stdout.strip("\0").split("\0")  # fmt: skip
    new = [
        f"{name}:{s['line_number']}: {s['type']}"
        for name, found in scan(tracked, detect_secrets).items()
        for s in found
        if (name, s["hashed_secret"]) not in known_pairs
    ]
    with tempfile.TemporaryDirectory() as folder:
        history = Path(folder) / "history.patch"
        with history.open("w") as handle:
            subprocess.run(["git", "log", "--all", "-p", "--no-color"], stdout=handle, check=True)
        new += [
            f"line {s['line_number']} of git log --all -p: {s['type']}"
            for found in scan([str(history)], detect_secrets).values()
            for s in found
            if s["hashed_secret"] not in known_hashes
        ]
    for line in new:
        print(f"secret-scan: not in {BASELINE}: {line}")
    print(f"secret-scan: {len(new)} new finding(s) in the tree and the history")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
