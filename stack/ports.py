"""Which ports each process of a deployment shape listens on, computed from its configuration.

Processes that share one network namespace (everything natively, the containers of one
Kubernetes pod, the containers of one OCI Container Instance) must not bind the same port.
This module reads what each component would really bind from the same inputs it reads at
start: the model server's typed settings, the gateway's rendered nginx configuration (the
real nginx/render.sh), the tracking server's port. `collisions` then says what clashes.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from common import facts

ROOT = Path(__file__).resolve().parent.parent
_LISTEN = re.compile(r"^\s*listen\s+(?:[\w.\[\]:]*:)?(\d+)\b", re.MULTILINE)


def model_server_ports(env: dict[str, str]) -> set[int]:
    """The port gunicorn binds, from the SERVING_* variables as serving/settings.py reads them."""
    from serving.settings import ServingSettings

    value = env.get("SERVING_PORT", "")
    # Validated like the server validates it; an empty value means the default.
    return {ServingSettings.model_validate({"port": value} if value else {}).port}


def tracking_ports(env: dict[str, str]) -> set[int]:
    """The port of the MLflow tracking server (TRACKING_PORT, default the shared fact)."""
    return {int(env.get("TRACKING_PORT") or facts.MLFLOW_PORT)}


def gateway_ports(env: dict[str, str]) -> set[int]:
    """The ports of every `listen` in the gateway configuration that nginx/render.sh renders
    for this environment (without `nginx -t`, so service host names need not resolve)."""
    with tempfile.TemporaryDirectory(prefix="gateway-ports-") as workdir:
        render_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "MLFLOW_"))},
            **env,
            # Only the ports matter here: files and directories go to a scratch folder.
            "GATEWAY_RENDER_ONLY": "1",
            "GATEWAY_RUNTIME_DIR": workdir,
            "TLS_CERT_FILE": f"{workdir}/tls.crt",
            "TLS_KEY_FILE": f"{workdir}/tls.key",
            "API_KEYS_FILE": f"{workdir}/api-keys.map",
            "GATEWAY_ACCESS_LOG": f"{workdir}/access.log",
            "GATEWAY_ERROR_LOG": f"{workdir}/error.log",
            "GATEWAY_STATIC_DIR": f"{workdir}/static",
        }
        render_env.pop("GATEWAY_CONF_DIR", None)
        result = subprocess.run(
            ["sh", str(ROOT / "nginx" / "render.sh")],
            env=render_env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode:
            raise RuntimeError(f"nginx/render.sh failed: {result.stderr.strip()}")
        text = "\n".join(p.read_text() for p in Path(workdir).rglob("*.conf"))
    return {int(port) for port in _LISTEN.findall(text)}


PORTS_OF = {"model-server": model_server_ports, "gateway": gateway_ports, "mlflow": tracking_ports}
"""How to compute the listening ports of each component from its environment."""


def collisions(listeners: dict[str, set[int]]) -> dict[int, list[str]]:
    """Ports bound by more than one process of one network namespace: {port: [processes]}."""
    owners: dict[int, list[str]] = {}
    for process, ports in listeners.items():
        for port in ports:
            owners.setdefault(port, []).append(process)
    return {port: names for port, names in sorted(owners.items()) if len(names) > 1}
