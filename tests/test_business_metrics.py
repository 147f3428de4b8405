"""Business counters and the human console format."""

from __future__ import annotations

import io

import pytest
from loguru import logger

from otel_correlate import (
    business_context,
    record_notification,
    record_order_created,
    record_order_status_change,
)
from otel_correlate._capture import TelemetryCapture
from otel_correlate._logs import _console_format


def test_business_counters_have_names_units_and_low_cardinality_attributes(
    otel_capture: TelemetryCapture,
) -> None:
    with business_context(orderId="M-1"):
        record_order_created()
        record_order_status_change(from_status="new", to_status="paid")
        record_notification(channel="telegram", outcome="sent")
        record_notification(channel="telegram", outcome="failed")
    points = sorted(
        ((m.name, m.unit, tuple(sorted(m.attributes.items())), m.value) for m in otel_capture.metrics()),
    )
    assert points == [
        ("notifications", "{notification}", (("channel", "telegram"), ("outcome", "failed")), 1),
        ("notifications", "{notification}", (("channel", "telegram"), ("outcome", "sent")), 1),
        ("orders.created", "{order}", (("channel", "api"),), 1),
        ("orders.status_changes", "{change}", (("from", "new"), ("to", "paid")), 1),
    ]


def test_unknown_notification_outcome_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"outcome='lost': use one of sent, failed"):
        record_notification(channel="telegram", outcome="lost")


def test_console_line_starts_with_request_id_then_order_id() -> None:
    out = io.StringIO()
    sink = logger.add(out, format=_console_format, colorize=False)
    try:
        with business_context(requestId="r-5", orderId="O-5"):
            logger.info("shipped")
            with business_context(orderId="O-6"):
                logger.info("split")
            logger.info("back")
        logger.info("outside")
    finally:
        logger.remove(sink)
    lines = [line.split(" | ", 2)[2] for line in out.getvalue().splitlines()]
    assert lines == [
        "[requestId=r-5] [orderId=O-5] shipped",
        "[requestId=r-5] [orderId=O-6] split",
        "[requestId=r-5] [orderId=O-5] back",
        "[requestId=-] [orderId=-] outside",
    ]
