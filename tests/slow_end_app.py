"""A Flask service whose server spans are slow to end, for ``tests/test_processes.py``.

A span processor on the global provider (the SDK's, under ``opentelemetry-instrument``)
sleeps ``END_S`` as each SERVER span ends: a client that had to wait for the request's
telemetry would wait that long. It marks the spans it will hold up (``test.slow_end``).
"""

from __future__ import annotations

import time

from flask import Flask
from loguru import logger
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

END_S = 2.0


class _SlowEnd(SpanProcessor):
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span.set_attribute("test.slow_end", END_S)

    def on_end(self, span: ReadableSpan) -> None:
        if span.kind is trace.SpanKind.SERVER:
            time.sleep(END_S)


_add = getattr(trace.get_tracer_provider(), "add_span_processor", None)
if _add is not None:  # not when the test imports END_S
    _add(_SlowEnd())
app = Flask("slow-end")


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> dict[str, str]:
    logger.info("order {} looked up", order_id)
    return {"id": order_id}
