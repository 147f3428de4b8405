"""loguru and stdlib logging exported once each, with trace ids, business keys and extra."""

from __future__ import annotations

import io
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from loguru import logger
from opentelemetry import trace

from otel_correlate import InterceptHandler, _logs, business_context
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


def _one_sink_for_both(monkeypatch: pytest.MonkeyPatch, stderr: io.StringIO) -> int:
    """instrument_loguru as a service gets it (console and export), beside the session's own sink."""
    monkeypatch.setattr(sys, "stderr", stderr)
    for name in _logs._LOGURU_STATE:  # the session's export sink stays; this adds the service's
        monkeypatch.setitem(_logs._LOGURU_STATE, name, None)
    before = set(logger._core.handlers)  # type: ignore[attr-defined]
    _logs.instrument_loguru(console=True, level="INFO")
    handler = _logs._LOGURU_STATE["otel"]
    assert handler is not None and _logs._LOGURU_STATE["console"] == handler
    assert set(logger._core.handlers) - before == {handler}  # type: ignore[attr-defined]  # one, not two
    return handler


def test_console_and_export_share_one_loguru_handler(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = io.StringIO()
    handler = _one_sink_for_both(monkeypatch, stderr)
    reference = io.StringIO()  # the line the separate console sink prints
    console = logger.add(reference, format=_logs._console_format, colorize=False, level="INFO")
    try:
        with business_context(orderId="O-9", requestId="r-9"), tracer.start_as_current_span("h") as span:
            logger.info("shipped {}", 3)
            logger.bind(carrier="dhl").warning("late")
            ctx = span.get_span_context()
    finally:
        logger.remove(handler)
        logger.remove(console)
    assert stderr.getvalue() == reference.getvalue()
    assert stderr.getvalue().splitlines()[0].endswith("| INFO     | [requestId=r-9] [orderId=O-9] shipped 3")
    # Each record exported once by the service's sink and once by the session's: the same record,
    # without the console prefix among the attributes.
    records = _records(otel_capture)
    shipped = {
        "body": "shipped 3",
        "severity": "INFO",
        "attributes": {"orderId": "O-9", "requestId": "r-9"},
        "trace_id": ctx.trace_id,
        "span_id": ctx.span_id,
    }
    late = dict(
        shipped,
        body="late",
        severity="WARN",
        attributes={"carrier": "dhl", "orderId": "O-9", "requestId": "r-9"},
    )
    assert sorted(records, key=str) == sorted([shipped, shipped, late, late], key=str)


def test_the_console_line_is_printed_when_exporting_fails(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = io.StringIO()
    handler = _one_sink_for_both(monkeypatch, stderr)

    def broken(message: object) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(_logs, "_loguru_sink", broken)
    try:
        logger.info("still printed")
    finally:
        logger.remove(handler)
    lines = stderr.getvalue()
    assert "| INFO     | [requestId=-] [orderId=-] still printed" in lines
    assert "exporter exploded" in lines  # loguru's catch=True reports the failure, the service goes on


def test_lines_without_extra_stay_plain_through_the_shared_handler(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The console prefix loguru needs while formatting is not the line's extra: a plain line
    # keeps the emitter's plain path (no per-value check).
    handler = _one_sink_for_both(monkeypatch, io.StringIO())
    seen: list[bool] = []
    emit = _logs.EMITTER.emit

    def spy(**fields: Any) -> None:
        seen.append(fields["plain"])
        emit(**fields)

    monkeypatch.setattr(_logs.EMITTER, "emit", spy)
    try:
        logger.info("plain")
        logger.bind(carrier="dhl").info("bound")
    finally:
        logger.remove(handler)
    assert seen == [True, True, False, False]  # the session's sink and the service's, per line
