"""pytest plugin: the ``otel_capture`` fixture, telemetry captured in memory.

Registered through the ``pytest11`` entry point. The first test that asks for
``otel_capture`` installs otel-correlate's own pipeline (the same processors,
metric guard and log bridges the services run) with in-memory exporters as the
global providers; every test starts with an empty capture.

Example:
    >>> def test_order_span_has_order_id(otel_capture):  # doctest: +SKIP
    ...     with business_context(orderId="A-1"), tracer.start_as_current_span("pay"):
    ...         pass
    ...     [span] = otel_capture.spans()
    ...     assert span.attributes["orderId"] == "A-1"
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_correlate._capture import TelemetryCapture, install_capture


@pytest.fixture
def otel_capture() -> Iterator[TelemetryCapture]:
    """Telemetry captured in memory through otel-correlate's real pipeline, empty at test start."""
    capture = install_capture()
    capture.clear()
    yield capture
    capture.clear()
