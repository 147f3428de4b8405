"""Export what is buffered when the process is terminated by SIGTERM.

uvicorn handles SIGTERM itself, shuts down gracefully, then restores the handler it
found and raises the signal again, "the expected behaviour". With Python's default
action that kills the interpreter on the spot: ``atexit`` never runs, so the SDK's
batch processors never flush and the spans and log records of the last seconds
(up to a batch of each, measured: 2 % of a 6-second benchmark run) and the metrics
since the last export are lost on every restart and deploy. The same happens to
any program that leaves SIGTERM at its default.

:func:`flush_on_sigterm` installs, when SIGTERM still has its default action, a
handler that flushes (in a helper thread, for at most ``timeout`` seconds, so a
flush blocked on a lock the interrupted code holds cannot hang the process) and
then terminates exactly as the default action would. Programs that install their
own handler (gunicorn's workers exit through ``sys.exit``, so ``atexit`` flushes)
replace it and are unaffected.

Example (what the configurator does once the providers exist)::

    flush_on_sigterm(lambda: providers.force_flush(timeout_millis=5000))
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

_log = logging.getLogger("otel_correlate")

#: Longest wait for the flush before the process terminates anyway.
FLUSH_SECONDS = 5.0


def flush_on_sigterm(flush: Callable[[], None], timeout: float = FLUSH_SECONDS) -> bool:
    """Run ``flush`` before the default SIGTERM action; True when the handler was installed.

    Not installed outside the main thread (signals cannot be set there) or when
    SIGTERM already has a handler (the program owns its shutdown).
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return False

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        def run() -> None:
            try:
                flush()
            except Exception:  # the process is ending; say why telemetry was lost
                _log.exception("otel-correlate: flushing telemetry at SIGTERM failed")

        worker = threading.Thread(target=run, name="otel-correlate-sigterm-flush", daemon=True)
        worker.start()
        worker.join(timeout)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    return True
