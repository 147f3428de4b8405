"""A small bounded background worker for fire-and-forget work that must not block the caller.

:class:`BoundedWorker` hands each item to a handler on one daemon thread, under
the OpenTelemetry context of the code that submitted it (so spans and logs keep
the caller's trace and business keys). :meth:`BoundedWorker.submit` never blocks:
when the queue is full it returns ``False`` and the caller decides what to do
with the item (the notifier dead-letters it).

Example:
    >>> handled = []
    >>> worker = BoundedWorker(handled.append, name="doctest", queue_size=10)
    >>> worker.submit("one")
    True
    >>> worker.flush(timeout=5), handled
    (True, ['one'])
    >>> worker.close()
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from loguru import logger
from opentelemetry import context

T = TypeVar("T")


class BoundedWorker(Generic[T]):
    """One daemon thread draining a bounded queue into ``handle``.

    Args:
        handle: Called with each item; exceptions are logged, never raised.
        name: The thread's name, shown in thread dumps and logs.
        queue_size: Items held before :meth:`submit` refuses new ones.
    """

    def __init__(self, handle: Callable[[T], object], *, name: str, queue_size: int = 100) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size={queue_size!r} is not valid: use an integer of at least 1.")
        self._handle = handle
        self._name = name
        self._queue: queue.Queue[tuple[context.Context, T] | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """How many items the queue holds."""
        return self._queue.maxsize

    def submit(self, item: T) -> bool:
        """Queue ``item`` with the current context and return at once; ``False`` when the queue is full.

        Raises:
            RuntimeError: No thread can be started (e.g. at interpreter shutdown).
        """
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((context.get_current(), item))
        except queue.Full:
            return False
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted item was handled; ``False`` when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Handle what is queued (up to ``timeout``), then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self.flush(timeout)
        try:
            self._queue.put(None, timeout=1)
        except queue.Full:
            return
        thread.join(timeout=1)

    def _work(self) -> None:
        while True:
            entry = self._queue.get()
            try:
                if entry is None:
                    return
                ctx, item = entry
                token = context.attach(ctx)
                try:
                    self._handle(item)
                finally:
                    context.detach(token)
            except Exception as exc:  # the handler should not raise; this is the last line of defence
                logger.bind(worker=self._name).error("background worker {} failed: {}", self._name, exc)
            finally:
                self._queue.task_done()
