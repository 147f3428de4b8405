"""loguru and stdlib logging exported once each, with trace ids, business keys and extra."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from loguru import logger
from opentelemetry import trace

from otel_correlate import InterceptHandler, business_context
from otel_correlate._capture import TelemetryCapture
from otel_correlate._logs import flatten, severity

tracer = trace.get_tracer("tests")


def _records(capture: TelemetryCapture) -> list[dict[str, object]]:
    return [
        {
            "body": r.log_record.body,
            "severity": r.log_record.severity_text,
            "attributes": {
                k: v for k, v in (r.log_record.attributes or {}).items() if not k.startswith("code.")
            },
            "trace_id": r.log_record.trace_id,
            "span_id": r.log_record.span_id,
        }
        for r in capture.logs()
    ]


def test_loguru_record_becomes_one_otel_record_with_everything(otel_capture: TelemetryCapture) -> None:
    with business_context(orderId="L-1", requestId="r-1"), tracer.start_as_current_span("handler") as span:
        logger.bind(customer={"tier": "gold", "id": 7}, attempt=2).success("paid {}", 12.5)
        ctx = span.get_span_context()
    assert _records(otel_capture) == [
        {
            "body": "paid 12.5",
            "severity": "INFO2",
            "attributes": {
                "customer.tier": "gold",
                "customer.id": 7,
                "attempt": 2,
                "orderId": "L-1",
                "requestId": "r-1",
            },
            "trace_id": ctx.trace_id,
            "span_id": ctx.span_id,
        }
    ]
    [record] = otel_capture.logs()
    assert (
        record.log_record.attributes["code.function.name"]
        == "test_loguru_record_becomes_one_otel_record_with_everything"
    )


def test_loguru_exception_carries_type_message_and_stack(otel_capture: TelemetryCapture) -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        logger.exception("lookup failed")
    [record] = otel_capture.logs()
    attributes = record.log_record.attributes
    assert record.log_record.severity_text == "ERROR"
    assert attributes["exception.type"] == "KeyError"
    assert attributes["exception.message"] == "'missing'"
    assert 'raise KeyError("missing")' in attributes["exception.stacktrace"]


def test_stdlib_logging_is_exported_once(otel_capture: TelemetryCapture) -> None:
    stdlib = logging.getLogger("tests.stdlib")
    stdlib.setLevel(logging.INFO)
    with business_context(orderId="S-1"):
        stdlib.warning("disk at %d%%", 91)
    assert [(r["body"], r["severity"], r["attributes"]) for r in _records(otel_capture)] == [
        ("disk at 91%", "WARN", {"orderId": "S-1"})
    ]


def test_stdlib_routed_into_loguru_is_not_exported_twice(otel_capture: TelemetryCapture) -> None:
    stdlib = logging.getLogger("tests.intercepted")
    stdlib.setLevel(logging.INFO)
    stdlib.addHandler(InterceptHandler())
    try:
        stdlib.info("routed through loguru")
    finally:
        stdlib.handlers.clear()
    assert [r["body"] for r in _records(otel_capture)] == ["routed through loguru"]


def test_loguru_propagated_into_stdlib_is_not_exported_twice(otel_capture: TelemetryCapture) -> None:
    class PropagateHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logging.getLogger(record.name).handle(record)

    sink = logger.add(PropagateHandler(), format="{message}")
    try:
        logger.info("propagated to logging")
    finally:
        logger.remove(sink)
    assert [r["body"] for r in _records(otel_capture)] == ["propagated to logging"]


def test_opentelemetry_internal_logs_are_not_exported(otel_capture: TelemetryCapture) -> None:
    logging.getLogger("opentelemetry.exporter.otlp.proto.http").warning("export failed")
    assert _records(otel_capture) == []


def test_loguru_timestamps_are_the_records_time_to_the_nanosecond(otel_capture: TelemetryCapture) -> None:
    seen: list[datetime] = []
    handler = logger.add(lambda message: seen.append(message.record["time"]), format="{message}")
    try:
        for n in range(5):
            logger.info("tick {}", n)
    finally:
        logger.remove(handler)

    def exact_ns(
        moment: datetime,
    ) -> int:  # integer arithmetic: a float of nanoseconds is only exact to 256 ns
        since = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return (since.days * 86400 + since.seconds) * 1_000_000_000 + since.microseconds * 1000

    assert [r.log_record.timestamp for r in otel_capture.logs()] == [exact_ns(t) for t in seen]


@pytest.mark.parametrize(
    ("level", "expected"),
    [(5, "TRACE"), (10, "DEBUG"), (20, "INFO"), (25, "INFO2"), (30, "WARN"), (40, "ERROR"), (50, "FATAL")],
)
def test_severity_mapping(level: int, expected: str) -> None:
    assert severity(level)[1] == expected


def test_flatten_nested_extra() -> None:
    assert flatten({"a": {"b": {"c": 1}}, "d": (1, 2), "e": object, "_oc_prefix": "x"}) == {
        "a.b.c": 1,
        "d": [1, 2],
        "e": "<class 'object'>",
    }
