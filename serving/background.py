"""A bounded queue with one daemon thread behind it: what the decision log's writer and the
shadow scorer share. `_offer` never blocks (False when full: the caller counts the drop); the
thread starts on first use, so in a gunicorn worker, not in the master (threads do not
survive fork)."""

from __future__ import annotations

import queue
import threading
import time


class BackgroundQueue:
    """Subclasses implement `_run`, reading `self._queue` until `self._stop` is set and
    calling `task_done` for every item taken."""

    thread_name = "background"

    def __init__(self, maxsize: int):
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def _offer(self, item) -> bool:
        """Queue an item without waiting; False when the queue is full."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=self.thread_name, daemon=True
                )
                self._thread.start()

    def _run(self) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def flush(self, timeout: float) -> bool:
        """Wait until every queued item was handled; False at the deadline."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Handle what is queued (up to `timeout`), then stop the thread."""
        if self._thread is not None:
            self.flush(timeout)
            self._stop.set()
            self._thread.join(timeout)
