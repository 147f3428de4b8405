"""Forked children in tests: waited for with a deadline, so a child that hangs fails its test instead of the run."""

from __future__ import annotations

import os
import signal
import time


def exit_code_of(pid: int, timeout: float = 60.0) -> int:
    """The forked child's exit code; killed and reported when it has not exited after ``timeout`` seconds.

    A child forked from a threaded process can deadlock on a lock another thread
    held at the fork; waiting for it without a deadline would hang the whole run.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(
        f"the forked child {pid} had not exited after {timeout:.0f} s (a lock held at the fork?)"
    )
