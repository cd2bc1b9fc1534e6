#!/usr/bin/env bash
# Create or update the deployment checkers' virtualenv (default .local/venv-tools) from
# tests/deploy/requirements-tools.txt; a stamp skips the work when nothing changed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${1:-$repo/.local/venv-tools}"
requirements="$repo/tests/deploy/requirements-tools.txt"
stamp="$venv/.installed"
if [ -f "$stamp" ] && [ "$stamp" -nt "$requirements" ]; then exit 0; fi
command -v kubectl >/dev/null || echo "warning: kubectl is missing; tests/deploy needs it (kubectl 1.30+ with built-in kustomize)" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$requirements"
touch "$stamp"
echo "deployment checkers installed in $venv"
