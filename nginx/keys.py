"""API keys for the gateway: create, list, rotate and revoke, then reload nginx gracefully.

    python nginx/keys.py create apex-prod      # prints the new key once
    python nginx/keys.py list                  # ids, names, dates, fingerprints; never keys
    python nginx/keys.py rotate apex-prod      # a second key for the same client
    python nginx/keys.py revoke apex-prod/1    # one key; `revoke apex-prod` removes all
    python nginx/keys.py upgrade               # rewrite older plain entries as exact-case ones

The keys file ($API_KEYS_FILE, default .local/secrets/api-keys.map) is an nginx `map` include:
one line per key, `"~^<key>$" "<client>";  # id=<client>/<n> created=<time>`: an anchored
regular expression, the one kind of map entry nginx compares case-sensitively, so only the exact
key matches (nginx cannot hash a header, so the file holds the keys; it is mode 600, a Secret
in containers). `upgrade` rewrites a file of the older plain entries. The client name
(never the key) is what nginx logs and passes upstream as X-Client. After a change the file is
replaced atomically (mode 600) and nginx reloads: old workers finish their requests, new ones
use the new keys. Rotation without downtime: rotate, move the client to the new key, revoke
the old one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_KEYS_FILE = Path(".local/secrets/api-keys.map")
DEFAULT_RUNTIME_DIR = Path(".local/nginx")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_LINE = re.compile(
    r'^"(?P<regex>~\^)?(?P<key>[A-Za-z0-9_-]+)(?(regex)\$)"\s+"(?P<name>[^"]+)";\s*#\s*id=(?P<id>\S+)\s+created=(?P<created>\S+)'
)


class KeysError(Exception):
    """A problem the person at the terminal can fix."""


@dataclass
class ApiKey:
    key: str
    name: str
    id: str
    created: str

    def line(self) -> str:
        return f'"~^{self.key}$" "{self.name}";  # id={self.id} created={self.created}\n'

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:12]


def read_keys(path: Path) -> list[ApiKey]:
    if not path.exists():
        return []
    keys = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = _LINE.match(line.strip())
        if not found:
            raise KeysError(f"{path}:{number} is not a key line this tool wrote; fix or remove it")
        keys.append(ApiKey(found["key"], found["name"], found["id"], found["created"]))
    return keys


def write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Replace the file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# API keys for the gateway (nginx map include). Managed by nginx/keys.py.\n"
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(header + "".join(k.line() for k in keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        if path.exists() and os.geteuid() == 0:
            # Root edits the file of a gateway that runs as another user (`make up` as root runs
            # nginx as the stack's user): the new file keeps the old one's owner.
            old = path.stat()
            os.chown(temp, old.st_uid, old.st_gid)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def new_key(keys: list[ApiKey], name: str) -> ApiKey:
    if not _NAME.match(name):
        raise KeysError(
            f"client name '{name}' is not allowed; use lowercase letters, digits, '.', '_', '-'"
        )
    generations = [int(k.id.rsplit("/", 1)[1]) for k in keys if k.name == name]
    key_id = f"{name}/{max(generations, default=0) + 1}"
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ApiKey(secrets.token_urlsafe(32), name, key_id, created)


def reload_nginx(runtime_dir: Path) -> str:
    """Check the configuration, then signal the master to reload (if nginx runs)."""
    pid_file = runtime_dir / "nginx.pid"
    if not pid_file.exists():
        return "nginx is not running here; the keys apply when it starts"
    # The gateway's own check command; the reload itself is a SIGHUP here, because the CLI
    # then waits for the new workers of that master.
    check = subprocess.run(
        ["sh", str(Path(__file__).resolve().parent / "gateway.sh"), "check"],
        capture_output=True,
        text=True,
        env={**os.environ, "GATEWAY_RUNTIME_DIR": str(runtime_dir)},
    )
    if check.returncode != 0:
        raise KeysError(
            f"nginx rejects the new configuration, not reloaded: {check.stderr.strip()}"
        )
    try:
        master = int(pid_file.read_text().strip())
        old_workers = _workers(master)
        os.kill(master, signal.SIGHUP)
    except (OSError, ValueError) as error:
        raise KeysError(f"could not signal nginx (pid file {pid_file}): {error}") from None
    if not _wait_for_new_workers(master, old_workers, timeout=10):
        raise KeysError("nginx did not start new workers within 10 s; see its error log")
    return "nginx reloaded gracefully"


def _workers(master: int) -> set[int]:
    """Worker processes of an nginx master that still accept new connections."""
    workers = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            title = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == master and b"shutting down" not in title:
            workers.add(int(entry.name))
    return workers


def _wait_for_new_workers(master: int, old_workers: set[int], timeout: float) -> bool:
    """A reload is done for new connections once only new workers accept them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = _workers(master)
        if current and not current & old_workers:
            return True
        time.sleep(0.05)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keys", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--file",
        type=Path,
        default=Path(os.environ.get("API_KEYS_FILE", DEFAULT_KEYS_FILE)),
        help="keys file (default: $API_KEYS_FILE or .local/secrets/api-keys.map)",
    )
    parser.add_argument(
        "--runtime-dir",
        type=Path,
        default=Path(os.environ.get("GATEWAY_RUNTIME_DIR", DEFAULT_RUNTIME_DIR)),
        help="the running gateway's rendered config and pid file (to reload it)",
    )
    parser.add_argument("--no-reload", action="store_true", help="only change the file")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("create", "rotate"):
        sub = commands.add_parser(command, help=f"{command} a key for a client")
        sub.add_argument("name")
        sub.add_argument("--key-file", type=Path, help="also write the new key to this file")
    commands.add_parser("list", help="show the keys (never the key values)")
    commands.add_parser("upgrade", help="rewrite the file in the exact-case format")
    revoke = commands.add_parser("revoke", help="remove a key by id (name/N) or all of a name")
    revoke.add_argument("id")
    args = parser.parse_args(argv)

    try:
        keys = read_keys(args.file)
        if args.command == "list":
            for key in keys:
                print(f"{key.id:24} {key.name:20} {key.created}  sha256:{key.fingerprint}")
            return 0
        if args.command == "upgrade":
            write_keys(args.file, keys)
            print(f"keys: {len(keys)} key(s) in the exact-case format", file=sys.stderr)
        elif args.command in ("create", "rotate"):
            if args.command == "create" and any(k.name == args.name for k in keys):
                raise KeysError(f"client '{args.name}' has a key; use 'rotate {args.name}'")
            if args.command == "rotate" and not any(k.name == args.name for k in keys):
                raise KeysError(f"client '{args.name}' has no key to rotate; use 'create'")
            key = new_key(keys, args.name)
            write_keys(args.file, [*keys, key])
            if args.key_file:
                args.key_file.parent.mkdir(parents=True, exist_ok=True)
                args.key_file.write_text(key.key + "\n")
                args.key_file.chmod(0o600)
            print(f"keys: added {key.id}; the key (shown once):", file=sys.stderr)
            print(key.key)
        else:
            kept = [k for k in keys if args.id not in (k.id, k.name)]
            if len(kept) == len(keys):
                raise KeysError(f"no key with id or name '{args.id}'; see 'list'")
            write_keys(args.file, kept)
            print(f"keys: revoked {len(keys) - len(kept)} key(s) of '{args.id}'", file=sys.stderr)
        if not args.no_reload:
            print(f"keys: {reload_nginx(args.runtime_dir)}", file=sys.stderr)
    except KeysError as error:
        print(f"keys: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
