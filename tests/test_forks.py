"""The tests' own helper for forked children (tests/forks.py)."""

from __future__ import annotations

import os
import time

import pytest

from tests.forks import exit_code_of


def test_a_child_that_exits_gives_its_code() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    assert exit_code_of(pid) == 3


def test_a_child_that_hangs_is_killed_and_fails_the_test() -> None:
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"had not exited after 0 s"):
        exit_code_of(pid, timeout=0.3)
    assert time.monotonic() - started < 10
    with pytest.raises(ChildProcessError):  # killed and reaped: no zombie left
        os.waitpid(pid, os.WNOHANG)
