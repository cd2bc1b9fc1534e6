"""The gunicorn worker class: uvicorn's worker with the server's own HTTP settings and accept.

With SERVING_BALANCED_ACCEPT (the default) the worker accepts from gunicorn's shared socket in
turn with the other workers (serving/balance.py), instead of uvloop's accept-everything-pending,
which lets a burst of connections land on one worker.
"""

from __future__ import annotations

import asyncio
import sys

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from serving.balance import FairAcceptor


class BalancedServer(Server):
    """uvicorn's server with a FairAcceptor per listening socket in place of loop.create_server."""

    def __init__(self, config, table, slot: int):
        super().__init__(config)
        self.table = table
        self.slot = slot

    async def startup(self, sockets=None) -> None:
        # uvicorn's own startup (lifespan, state) without listeners; ours are added below and
        # closed by uvicorn's shutdown like its own servers.
        await super().startup(sockets=[])
        loop = asyncio.get_running_loop()
        config = self.config

        def create_protocol():
            return config.http_protocol_class(
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=loop,
            )

        self.servers = [
            FairAcceptor(loop, sock, create_protocol, self.table, self.slot)
            for sock in sockets or []
        ]


class ModelServerWorker(UvicornWorker):
    CONFIG_KWARGS = {
        **UvicornWorker.CONFIG_KWARGS,
        # Do not advertise the server software; the gateway hides its own too.
        "server_header": False,
    }

    async def _serve(self) -> None:
        # gunicorn_conf.post_fork sets `connections` (the shared table) and `slot` when
        # SERVING_BALANCED_ACCEPT is on; otherwise uvicorn's own accept.
        table = getattr(self, "connections", None)
        if table is None:
            await super()._serve()
            return
        self.config.app = self.wsgi
        server = BalancedServer(self.config, table, self.slot)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
