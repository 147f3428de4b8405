"""What both server wrappers (FastAPI and Flask) must show in the same situations: one check each."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import Span

from otel_correlate._capture import TelemetryCapture


def assert_served_untraced_after_one_warning(
    otel_capture: TelemetryCapture, caplog: pytest.LogCaptureFixture, framework: str
) -> None:
    """An unusable request-id header setting: no spans, and one warning naming the setting and its value."""
    assert otel_capture.spans() == []
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"otel-correlate: {framework} requests are served without traces")
    assert "OTEL_CORRELATE_REQUEST_ID_HEADER='X-Req☃' is not valid" in warning


def assert_unrecordable_exception_ended_the_request(otel_capture: TelemetryCapture) -> None:
    """GET /mute raised an exception whose str() raises: the span still ended as an error, the count at 0."""
    [span] = otel_capture.spans()
    assert (span.name, span.status.status_code.name, span.attributes["error.type"]) == (
        "GET /mute",
        "ERROR",
        "_Mute",
    )
    points = {p.name: p for p in otel_capture.metrics() if p.name.startswith("http.server.")}
    assert points["http.server.request.duration"].attributes["error.type"] == "_Mute"
    assert points["http.server.active_requests"].value == 0


def span_attribute_updates(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``set_attributes`` call an SDK span gets from now on (the attributes it was given)."""
    updates: list[dict[str, Any]] = []
    set_attributes = Span.set_attributes

    def counted(self: Span, attributes: Any) -> None:
        updates.append(dict(attributes))
        set_attributes(self, attributes)

    monkeypatch.setattr(Span, "set_attributes", counted)
    return updates


class OutgoingBaggage:
    """What a handler's downstream calls would carry, and every context attached meanwhile.

    The handler calls :meth:`inject`; :meth:`assert_route_keys_joined_the_request`
    checks the route keys travel in the outgoing baggage while only the server
    wrapper's context was attached (none for the route).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from otel_correlate import _context

        self.attached: list[Any] = []
        self.carriers: list[dict[str, str]] = []
        attach = _context.attach
        monkeypatch.setattr(_context, "attach", lambda ctx: self.attached.append(ctx) or attach(ctx))

    def inject(self) -> None:
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        self.carriers.append(carrier)

    def assert_route_keys_joined_the_request(self, baggage: list[str]) -> None:
        [carrier] = self.carriers
        assert sorted(carrier["baggage"].split(",")) == baggage
        assert len(self.attached) == 1  # the server wrapper's context; nothing attached for the route


def touch_the_views_span(seen: list[int], event: bool) -> None:
    """What a view does to the request's span: an attribute, with ``event`` an event too; ``seen`` gets its span id."""
    from opentelemetry import trace

    span = trace.get_current_span()
    assert isinstance(span, Span)  # the SDK's span, with everything its API offers
    span.set_attribute("order.total", 42)
    if event:
        span.add_event("priced", {"currency": "EUR"})
    seen.append(span.get_span_context().span_id)


def assert_the_views_span_took_its_changes(
    otel_capture: TelemetryCapture, seen: list[int], route: str
) -> None:
    """GET /priced/A-1 then /noted/A-2 (see :func:`touch_the_views_span`): the request's span took both."""
    priced, noted = otel_capture.spans()
    assert seen == [
        priced.context.span_id,
        noted.context.span_id,
    ]  # the view's current span is the server span
    assert (priced.name, noted.name) == (f"GET /priced/{route}", f"GET /noted/{route}")
    for span, order in ((priced, "A-1"), (noted, "A-2")):
        assert (span.attributes["order.total"], span.attributes["orderId"]) == (42, order)
        assert span.attributes["http.response.status_code"] == 200
    assert (priced.events, [(e.name, dict(e.attributes or {})) for e in noted.events]) == (
        (),
        [("priced", {"currency": "EUR"})],
    )
