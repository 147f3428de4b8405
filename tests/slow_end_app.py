"""A Flask service whose server spans are slow to end, for ``tests/test_processes.py``.

Started with ``SLOW_END_S`` set (under ``opentelemetry-instrument``), it adds a span
processor to the global provider that sleeps that long as each SERVER span ends: a
client that had to wait for the request's telemetry would wait that long. The
processor marks the spans it will hold up (``test.slow_end``). Imported without
``SLOW_END_S`` (by a test process, whose provider serves other tests), it adds nothing.
"""

from __future__ import annotations

import os
import time

from flask import Flask
from loguru import logger
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor


class _SlowEnd(SpanProcessor):
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span.set_attribute("test.slow_end", self._seconds)

    def on_end(self, span: ReadableSpan) -> None:
        if span.kind is trace.SpanKind.SERVER:
            time.sleep(self._seconds)


if "SLOW_END_S" in os.environ:
    trace.get_tracer_provider().add_span_processor(_SlowEnd(float(os.environ["SLOW_END_S"])))  # type: ignore[attr-defined]
app = Flask("slow-end")


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> dict[str, str]:
    logger.info("order {} looked up", order_id)
    return {"id": order_id}
