"""business_context, validation and the span processor, through the real pipeline in memory."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.propagate import inject

from otel_correlate import _context, business_context, current_business_keys, current_request_id, traced
from otel_correlate._capture import TelemetryCapture
from otel_correlate._context import promote_inbound, validate_value

tracer = trace.get_tracer("tests")


def test_spans_inside_business_context_carry_the_keys(otel_capture: TelemetryCapture) -> None:
    with tracer.start_as_current_span("outer"), business_context(orderId="A-1", requestId="r-1"):
        with tracer.start_as_current_span("inner"):
            pass
    spans = {s.name: s for s in otel_capture.spans()}
    assert dict(spans["inner"].attributes) == {"orderId": "A-1", "requestId": "r-1"}
    # the span already running when the keys were set learns them too
    assert dict(spans["outer"].attributes) == {"orderId": "A-1", "requestId": "r-1"}


def test_keys_leave_the_context_with_the_block(otel_capture: TelemetryCapture) -> None:
    with business_context(orderId="A-2"):
        pass
    with tracer.start_as_current_span("after"):
        pass
    [span] = otel_capture.spans()
    assert "orderId" not in span.attributes
    assert current_business_keys() == {}


def test_business_context_decorates_sync_and_async_functions(otel_capture: TelemetryCapture) -> None:
    @business_context(orderId="S-1")
    @traced
    def sync_work() -> str:
        return current_business_keys()["orderId"]

    @business_context(orderId="AS-1")
    @traced
    async def async_work() -> str:
        await asyncio.sleep(0)
        return current_business_keys()["orderId"]

    assert sync_work() == "S-1"
    assert asyncio.run(async_work()) == "AS-1"
    spans = {s.name: dict(s.attributes) for s in otel_capture.spans()}
    assert spans["test_business_context_decorates_sync_and_async_functions.<locals>.sync_work"] == {
        "orderId": "S-1"
    }
    assert spans["test_business_context_decorates_sync_and_async_functions.<locals>.async_work"] == {
        "orderId": "AS-1"
    }


def test_business_context_puts_keys_in_outgoing_baggage(otel_capture: TelemetryCapture) -> None:
    carrier: dict[str, str] = {}
    with business_context(orderId="B-1", requestId="req-9"):
        inject(carrier)
    assert sorted(carrier["baggage"].split(",")) == ["orderId=B-1", "requestId=req-9"]


@pytest.mark.parametrize("bad", [None, 3.5, True, b"bytes", "", "a b", "x\r\ny", "ü", "a" * 129, {"k": 1}])
def test_invalid_values_are_rejected_and_counted_never_raised(
    otel_capture: TelemetryCapture, bad: object
) -> None:
    with business_context(orderId=bad), tracer.start_as_current_span("work"):
        pass
    [span] = otel_capture.spans()
    assert "orderId" not in span.attributes
    rejected = [m for m in otel_capture.metrics() if m.name == "otel_correlate.context.rejected"]
    assert [(m.attributes, m.value) for m in rejected] == [
        ({"key": "orderId", "reason": "invalid_value", "source": "code"}, 1)
    ]


def test_unknown_key_is_a_programming_error_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="'customerId' is not a business key.*OTEL_CORRELATE_KEYS"):
        business_context(customerId="c-1")


def test_validate_value_accepts_the_documented_charset_up_to_128() -> None:
    assert validate_value("A-z_0.9:x") == "A-z_0.9:x"
    assert validate_value("a/b") is None
    assert validate_value("A-z0.9:x") == "A-z0.9:x"
    assert validate_value("a" * 128) == "a" * 128
    assert validate_value(42) == "42"


def test_inbound_baggage_promotes_only_allowlisted_valid_keys(otel_capture: TelemetryCapture) -> None:
    ctx = baggage.set_baggage("orderId", "O-1")
    ctx = baggage.set_baggage("requestId", "bad value", ctx)
    ctx = baggage.set_baggage("userEmail", "a@b.c", ctx)
    promoted, rejected = promote_inbound(ctx)
    assert promoted == {"orderId": "O-1"}
    assert rejected == [("requestId", "invalid_value")]
    token = context.attach(ctx)
    try:
        with tracer.start_as_current_span("from-baggage"):
            pass
    finally:
        context.detach(token)
    [span] = otel_capture.spans()
    assert dict(span.attributes) == {"orderId": "O-1"}


def test_current_request_id_outside_and_inside_a_request() -> None:
    assert current_request_id() is None
    with business_context(requestId="r-77"):
        assert current_request_id() == "r-77"


def test_traced_records_exceptions_and_error_status(otel_capture: TelemetryCapture) -> None:
    @traced(name="charge", attributes={"payment.provider": "stub"})
    def charge() -> None:
        raise RuntimeError("card declined")

    with business_context(orderId="E-1"), pytest.raises(RuntimeError):
        charge()
    [span] = otel_capture.spans()
    assert span.name == "charge"
    assert dict(span.attributes) == {"payment.provider": "stub", "orderId": "E-1"}
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.status.description == "RuntimeError: card declined"
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "RuntimeError"


def test_the_current_context_is_read_as_the_api_reads_it() -> None:
    assert _context.current_context() is context.get_current()
    token = _context.attach(context.set_value("k", "v"))
    try:
        assert _context.current_context() is context.get_current()
        assert context.get_value("k") == "v"
    finally:
        _context.detach(token)
    assert context.get_value("k") is None
    token = context.attach(context.set_value("k", "w"))  # the API's token: our detach resets it too
    _context.detach(token)
    assert context.get_value("k") is None


def test_a_token_the_context_refuses_is_logged_as_the_api_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    token = contextvars.copy_context().run(_context.attach, context.set_value("k", "v"))  # another Context's
    with caplog.at_level(logging.ERROR):
        _context.detach(token)  # no exception into the caller
    assert [r.getMessage() for r in caplog.records] == ["Failed to detach context"]


def test_another_runtime_context_is_used_through_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _context.CONTEXT_VARIABLE is not None  # the API's default runtime context here
    monkeypatch.setattr(context, "_RUNTIME_CONTEXT", object())
    assert _context._context_variable() is None
