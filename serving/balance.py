"""Connections spread evenly over the gunicorn workers: a fair accept on the shared socket.

Why: every worker listens on the one socket gunicorn's master bound, and uvloop accepts every
pending connection in one wake-up. A burst of connections (nginx opening its upstream
keep-alive pool, wrk starting) therefore lands on whichever worker wakes first, and because
those connections are kept alive, the skew lasts: one worker scores for all while the other
idles (bench/README.md, "Connection balance": 8 / 0 at c=8, a third of the usual rate).

What: a table of open connections per worker slot lives in memory the master maps before it
forks, so every worker sees every other's count. A worker accepts one connection per wake-up,
and only while it holds no more open connections than the least loaded other live worker;
otherwise it steps back for a millisecond and leaves the connection to the others. A
connection is never refused and never waits long: after `MAX_DEFER_SECONDS` the worker takes
it anyway (the others may be busy, or gone).

Why not one listener per worker (`SO_REUSEPORT`): when a worker retires during an alias swap,
the kernel resets the connections still queued on that worker's own socket unless
`net.ipv4.tcp_migrate_req=1` (0 on our hosts, and not ours to set on a managed node). With the
one shared socket a retiring worker just stops accepting and its queue is the new workers'.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import select
import socket
import time

log = logging.getLogger("serving.balance")

# Workers are at most 64 (settings), and old and new ones overlap during a swap.
MAX_SLOTS = 256
_ABSENT = -1
# How long a worker over its share steps back before it looks again, and how long in all it
# leaves a pending connection to the others before it takes it itself.
DEFER_SECONDS = 0.001
MAX_DEFER_SECONDS = 0.02
# After an accept error such as EMFILE (too many open files), wait this long before retrying.
ERROR_BACKOFF_SECONDS = 0.1


class ConnectionTable:
    """Open connections per worker slot, in an anonymous shared mapping.

    Made in gunicorn's master before it forks (gunicorn_conf.py), so the master and every
    worker see the same memory. Each slot has one writer at a time: its worker (opened,
    closed), or the master while no worker holds the slot (join before the worker runs,
    leave after it was reaped). A plain int32 store is atomic on every platform we run on,
    and a momentarily stale count only makes one accept a little less fair.
    """

    def __init__(self, slots: int = MAX_SLOTS):
        self._memory = mmap.mmap(-1, 4 * slots)  # MAP_SHARED | MAP_ANONYMOUS on Linux
        self._counts = memoryview(self._memory).cast("i")
        for slot in range(slots):
            self._counts[slot] = _ABSENT

    @property
    def slots(self) -> int:
        return len(self._counts)

    def join(self, slot: int) -> None:
        self._counts[slot] = 0

    def leave(self, slot: int) -> None:
        self._counts[slot] = _ABSENT

    def opened(self, slot: int) -> None:
        self._counts[slot] += 1

    def closed(self, slot: int) -> None:
        self._counts[slot] = max(0, self._counts[slot] - 1)

    def count(self, slot: int) -> int:
        return self._counts[slot]

    def fair_to_accept(self, slot: int) -> bool:
        """True when this slot holds no more open connections than the least loaded other."""
        mine = self._counts[slot]
        others = [count for other, count in enumerate(self._counts) if other != slot and count >= 0]
        return not others or mine <= min(others)


class FairAcceptor:
    """Accept from a shared listening socket in turn with the other workers.

    Stands in for the `asyncio.Server` uvicorn keeps per socket: `close()` stops accepting
    (a retiring worker), `wait_closed()` returns at once (the socket belongs to the master).
    """

    def __init__(self, loop, sock: socket.socket, protocol_factory, table, slot: int):
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._factory = protocol_factory
        self._table = table
        self._slot = slot
        self._tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._deferred_since: float | None = None
        self._closed = False
        self._reading = False
        sock.setblocking(False)
        self._start_reading()

    def close(self) -> None:
        self._closed = True
        self._stop_reading()

    async def wait_closed(self) -> None:
        return None

    def _start_reading(self) -> None:
        if not self._closed and not self._reading:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _step_back(self, seconds: float) -> None:
        self._stop_reading()
        self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        if self._closed:
            return
        # Nothing pending any more (another worker took it): the next connection starts a
        # fresh wait instead of inheriting this one's.
        if not select.select([self._fd], [], [], 0)[0]:
            self._deferred_since = None
        self._start_reading()

    def _on_readable(self) -> None:
        if not self._table.fair_to_accept(self._slot):
            now = time.monotonic()
            if self._deferred_since is None:
                self._deferred_since = now
            if now - self._deferred_since < MAX_DEFER_SECONDS:
                self._step_back(DEFER_SECONDS)
                return
        self._deferred_since = None
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as error:
            # EMFILE, ENFILE, ENOBUFS: the connection stays queued; try again shortly.
            log.warning("accept failed (%s); retrying in %.1f s", error, ERROR_BACKOFF_SECONDS)
            self._step_back(ERROR_BACKOFF_SECONDS)
            return
        conn.setblocking(False)
        if self._tcp:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._table.opened(self._slot)
        task = self._loop.create_task(self._connect(conn))
        task.add_done_callback(_log_failure)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._counted_protocol, sock=conn)
        except BaseException:
            self._table.closed(self._slot)
            conn.close()
            raise

    def _counted_protocol(self):
        protocol = self._factory()
        table, slot = self._table, self._slot
        connection_lost = protocol.connection_lost

        def counted_connection_lost(exc):
            table.closed(slot)
            connection_lost(exc)

        protocol.connection_lost = counted_connection_lost
        return protocol


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a connection could not be set up: %s", type(task.exception()).__name__)
