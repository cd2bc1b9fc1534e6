"""The gunicorn worker class: uvicorn's worker with the server's own HTTP settings."""

from uvicorn_worker import UvicornWorker


class ModelServerWorker(UvicornWorker):
    CONFIG_KWARGS = {
        **UvicornWorker.CONFIG_KWARGS,
        # Do not advertise the server software; the gateway hides its own too.
        "server_header": False,
    }
