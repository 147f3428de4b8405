"""Shared fixtures: one native stack per test session for every e2e module that needs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_correlate import _stack


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """Endpoints of the stack of ``OTEL_CORRELATE_STATE_DIR`` and ``OTEL_CORRELATE_PORT_OFFSET``.

    A stack that already runs there is reused and left running (a developer's
    ``otel-correlate stack up``); otherwise it is started here once for the
    whole session and stopped when the session ends.
    """
    already_running = all(line.endswith(", ready") for line in _stack.status().values())
    if not already_running:
        stopped = [name for name, line in _stack.status().items() if line == "stopped"]
        try:
            _stack.up()
        except BaseException:  # the engines it did start must not outlive the session; a developer's stay
            _stack.down(names=stopped)
            raise
    try:
        yield _stack.endpoints()
    finally:
        if not already_running:
            _stack.down()
