"""Calling an ASGI app with a body already read, and keeping its answer instead of sending it.

The wrapper (serving/app.py) buffers the request body itself (to enforce the body limit), then
runs MLflow's app on it and rewrites MLflow's error responses before anything reaches the
client; the unit tests drive MLflow's app in-process the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def replay(body: bytes):
    """An ASGI `receive` that delivers `body` once, then reports the client gone."""
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


@dataclass
class CapturedResponse:
    """An ASGI `send` (the `send` method) that keeps the response instead of sending it."""

    status: int = 500  # what the answer counts as if the app never started one
    headers: list = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = message.get("headers", [])
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)
