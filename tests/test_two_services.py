"""Both demo services as real processes under opentelemetry-instrument, exporting real OTLP.

The orders service (FastAPI under uvicorn) calls the notifications service
(Flask under gunicorn), which calls a Telegram-compatible stub. Everything they
export goes over OTLP/HTTP to a receiver in this test that decodes the protobuf
with the official proto definitions.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from otel_correlate._demo import demo_services
from otel_correlate._procs import wait_until
from otel_correlate._receiver import OTLPReceiver, SpanRecord

pytestmark = pytest.mark.e2e
BUSINESS_KEYS = {"orderId", "requestId"}


@dataclass
class Demo:
    receiver: OTLPReceiver
    orders: str
    notifications: str
    telegram: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with (
        OTLPReceiver() as receiver,
        demo_services(receiver.endpoint, tmp_path_factory.mktemp("demo-logs")) as urls,
    ):
        yield Demo(receiver, urls.orders, urls.notifications, urls.telegram)


def _trace_of(receiver: OTLPReceiver, order_id: str, services: set[str]) -> list[SpanRecord]:
    """The trace whose spans carry ``order_id``, once it holds the server span of every service in ``services``.

    The server span ends last in each service (after its children were exported
    in an earlier batch), so waiting for it means the trace is complete.
    """
    found: list[SpanRecord] = []

    def complete() -> bool:
        nonlocal found
        for spans in receiver.traces().values():
            if (
                any(s.attributes.get("orderId") == order_id for s in spans)
                and {s.service for s in spans if s.kind == 2} >= services  # SPAN_KIND_SERVER
            ):
                found = spans
                return True
        return False

    wait_until(complete, timeout=20, what=f"a trace of order {order_id} across {sorted(services)}")
    return found


def test_one_trace_spans_both_services_with_business_keys_on_every_span(demo: Demo) -> None:
    response = httpx.post(
        f"{demo.orders}/orders",
        json={"customer": "ada", "amount": 12.5},
        headers={"X-Request-ID": "itest-create-1"},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.headers["x-request-id"] == "itest-create-1"
    order_id = response.json()["orderId"]
    assert response.json()["notified"] is True

    spans = _trace_of(demo.receiver, order_id, {"orders", "notifications"})
    assert len({s.trace_id for s in spans}) == 1
    server_spans = {s.service: s for s in spans if s.kind == 2}  # SPAN_KIND_SERVER
    assert set(server_spans) == {"orders", "notifications"}
    # the notifications server span is a child of a client span of orders
    client_ids = {s.span_id for s in spans if s.service == "orders" and s.kind == 3}
    assert server_spans["notifications"].parent_span_id in client_ids
    for span in spans:  # server, internal and client spans of both services, the call to Telegram included
        assert span.attributes.get("orderId") == order_id, span
        assert span.attributes.get("requestId") == "itest-create-1", span
    for service, span in server_spans.items():
        assert span.resource["service.name"] == service
        assert span.resource["telemetry.distro.name"] == "otel-correlate"
        assert span.attributes["http.response.status_code"] in (200, 201), span  # stable HTTP semconv


def test_logs_of_both_services_carry_trace_id_and_business_keys(demo: Demo) -> None:
    response = httpx.post(
        f"{demo.orders}/orders",
        json={"customer": "grace", "amount": 3},
        headers={"X-Request-ID": "itest-logs-1"},
    )
    order_id = response.json()["orderId"]
    spans = _trace_of(demo.receiver, order_id, {"orders", "notifications"})
    trace_id = spans[0].trace_id

    def order_logs() -> list[object]:
        return [r for r in demo.receiver.logs if r.attributes.get("orderId") == order_id]

    wait_until(
        lambda: {r.service for r in order_logs()} >= {"orders", "notifications"},
        timeout=20,
        what="log records of both services",
    )
    by_body = {(r.service, r.body): r for r in order_logs()}  # type: ignore[attr-defined]
    created = by_body[("orders", "order created for grace amount 3.0")]
    sent = by_body[("notifications", "notification sent")]
    for record in (created, sent):
        assert record.trace_id == trace_id
        assert record.attributes["requestId"] == "itest-logs-1"
        assert record.severity_text == "INFO"
        assert record.span_id != "0" * 16
        assert record.attributes["code.function.name"] in ("create_order", "notify")


def test_route_parameter_sets_order_id_and_downstream_receives_it(demo: Demo) -> None:
    order_id = httpx.post(f"{demo.orders}/orders", json={"customer": "linus", "amount": 9}).json()["orderId"]
    response = httpx.post(f"{demo.orders}/orders/{order_id}/status", json={"status": "paid"})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0  # generated: 128 random bits in hex

    def status_trace() -> bool:
        for spans in demo.receiver.traces().values():
            names = {s.name for s in spans}
            if "POST /orders/{order_id}/status" in names and {s.service for s in spans} >= {
                "orders",
                "notifications",
            }:
                return all(s.attributes.get("requestId") == request_id for s in spans if s.kind != 3)
        return False

    wait_until(status_trace, timeout=20, what="the status-change trace in both services")
    [spans] = [
        t
        for t in demo.receiver.traces().values()
        if any(s.name == "POST /orders/{order_id}/status" for s in t)
    ]
    for span in spans:
        assert span.attributes.get("orderId") == order_id, span


def test_no_metric_carries_a_business_key_and_http_metrics_exist(demo: Demo) -> None:
    httpx.post(f"{demo.orders}/orders", json={"customer": "metrics", "amount": 1})
    wait_until(
        lambda: (
            {m.service for m in demo.receiver.metrics if m.name == "http.server.request.duration"}
            >= {"orders", "notifications"}
        ),
        timeout=20,
        what="request-duration histograms of both services",
    )
    leaked = [m for m in demo.receiver.metrics if BUSINESS_KEYS & set(m.attributes)]
    assert leaked == []
    names = {m.name for m in demo.receiver.metrics}
    assert {
        "orders.created",
        "notifications",
        "http.server.request.duration",
        "http.client.request.duration",
        "process.cpu.time",
        "process.memory.usage",
    } <= names
    processes = {(m.service, m.name) for m in demo.receiver.metrics if m.name.startswith("process.")}
    assert processes == {
        (s, n) for s in ("orders", "notifications") for n in ("process.cpu.time", "process.memory.usage")
    }
    durations = [m for m in demo.receiver.metrics if m.name == "http.server.request.duration" and m.exemplars]
    assert durations, "request-duration points carry trace exemplars"
    assert all(len(e["trace_id"]) == 32 for m in durations for e in m.exemplars)


def test_health_and_metrics_urls_are_not_traced(demo: Demo) -> None:
    for path in ("/health", "/health/deployment", "/metrics"):
        httpx.get(f"{demo.orders}{path}")
    httpx.post(f"{demo.orders}/orders", json={"customer": "after-health", "amount": 1})
    wait_until(
        lambda: any(s.attributes.get("http.route") == "/orders" for s in demo.receiver.spans),
        timeout=20,
        what="the order span",
    )
    traced_paths = {s.attributes.get("url.path") for s in demo.receiver.spans}
    assert not traced_paths & {"/health", "/health/deployment", "/metrics"}


def _raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        return sock.recv(4096)


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "00-zzzz-not-a-trace-01"},
        {"baggage": "orderId=" + "A" * 9000},
        {"baggage": ",".join(f"k{i}=v{i}" for i in range(200))},
        {"baggage": "orderId=bad value with spaces,requestId=%0D%0Ainjected"},
        {"X-Request-ID": "x" * 129},
        {"X-Request-ID": "semi;colon"},
    ],
    ids=[
        "bad-traceparent",
        "8k-baggage",
        "200-entry-baggage",
        "invalid-baggage-values",
        "long-id",
        "bad-chars",
    ],
)
def test_bad_inbound_headers_never_fail_the_request(demo: Demo, headers: dict[str, str]) -> None:
    response = httpx.post(
        f"{demo.orders}/orders", json={"customer": "bad-input", "amount": 1}, headers=headers
    )
    assert response.status_code == 201
    request_id = response.headers["x-request-id"]
    assert request_id != headers.get("X-Request-ID")
    assert len(request_id) <= 128


def test_non_utf8_and_crlf_request_ids_are_replaced_and_the_service_stays_up(demo: Demo) -> None:
    port = int(demo.orders.rsplit(":", 1)[1])
    order_id = httpx.post(f"{demo.orders}/orders", json={"customer": "raw", "amount": 1}).json()["orderId"]
    for bad in (b"\xff\xfe\xfa", b"abc\rdef", b"abc%0D%0Adef"):
        answer = _raw_request(
            port,
            b"GET /orders/"
            + order_id.encode()
            + b" HTTP/1.1\r\nHost: x\r\nX-Request-ID: "
            + bad
            + b"\r\n\r\n",
        )
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
        assert not status_line.startswith(b"HTTP/1.1 5"), status_line
        assert b"x-request-id: " + bad not in answer.lower()
    assert httpx.get(f"{demo.orders}/orders/{order_id}").status_code == 200


def _deployment_health(demo: Demo, attempts: int = 3) -> dict[str, Any]:
    """The orders service's deployment health; asked again (at most ``attempts`` times) while
    its only finding is the notifications check's "slow" warning, which a loaded machine can
    cause (over 500 ms for a /health round trip). A failed check is returned at once."""
    for _ in range(attempts):
        orders = httpx.get(
            f"{demo.orders}/health/deployment", headers={"X-Request-ID": "health-1"}, timeout=10
        )
        assert orders.status_code == 200, orders.text
        body: dict[str, Any] = orders.json()
        slow_only = all(
            c["status"] == "pass" or (c["status"] == "warn" and set(c["details"]) >= {"slow"})
            for c in body["services"].values()
        )
        if not slow_only or body["summary"]["warningChecks"] == 0:
            return body
    return body


def test_deployment_health_of_both_services_sees_their_dependencies(demo: Demo) -> None:
    body = _deployment_health(demo)
    assert body["requestId"] == "health-1"
    assert {name: check["status"] for name, check in body["services"].items()} == {
        "collector": "pass",
        "notifications": "pass",
    }
    assert body["summary"] == {
        "overallStatus": "healthy",
        "totalChecks": 2,
        "passedChecks": 2,
        "failedChecks": 0,
        "warningChecks": 0,
    }
    assert httpx.get(f"{demo.notifications}/health", timeout=5).status_code == 200


def test_a_provider_outage_dead_letters_the_message_with_its_order(demo: Demo) -> None:
    """Runs last: it leaves the notifier's breaker open for a while."""
    httpx.post(f"{demo.telegram}/_stub/mode", json={"mode": "error", "status": 500}).raise_for_status()
    try:
        response = httpx.post(f"{demo.orders}/orders", json={"customer": "outage", "amount": 1}, timeout=30)
    finally:
        httpx.post(f"{demo.telegram}/_stub/reset").raise_for_status()
    assert response.status_code == 201  # the order flow never fails because of a notification
    assert response.json()["notified"] is False
    order_id = response.json()["orderId"]

    def dead_letters() -> list[object]:
        return [
            r
            for r in demo.receiver.logs
            if r.service == "notifications"
            and "DEAD_LETTER" in str(r.body)
            and r.attributes.get("orderId") == order_id
        ]

    wait_until(
        lambda: bool(dead_letters()), timeout=20, what="the DEAD_LETTER line in the notifications logs"
    )
    [line] = dead_letters()
    assert line.severity_text == "FATAL"  # type: ignore[attr-defined]
    assert line.attributes["requestId"] == response.headers["x-request-id"]  # type: ignore[attr-defined]
    assert len(line.trace_id) == 32 and line.trace_id != "0" * 32  # type: ignore[attr-defined]
