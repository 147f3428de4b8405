"""Personal data never reaches the backends: the SDK masks it, the collector is the second net.

On the real stack (our collector, Tempo, Loki, Prometheus): a service under
opentelemetry-instrument puts an e-mail address, a phone number, a Luhn-valid
card number and a bearer JWT into every signal; then OTLP sent straight to the
collector, past any SDK, carries the same kinds. Each test finds its data in the
engines (by orderId, requestId or a run label) and searches everything they
return, as raw JSON, for the sensitive strings.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otel_correlate._procs import (
    free_port,
    instrument_cmd,
    instrumented_env,
    running,
    uvicorn_cmd,
    wait_until,
)
from otel_correlate._query import Loki, Prometheus, Tempo
from otel_correlate._sensitive import luhn_valid

pytestmark = pytest.mark.e2e


def _card(rng: random.Random) -> str:
    """A Visa-like 16-digit number that passes the Luhn check, grouped by four."""
    body = "4" + "".join(str(rng.randrange(10)) for _ in range(14))
    digits = next(body + check for check in "0123456789" if luhn_valid(body + check))
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


def _b64(data: str) -> str:
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Personal:
    """Sensitive values unique to one run, and the fragments that must never be stored."""

    run: str
    email: str
    phone: str
    card: str
    token: str

    @classmethod
    def new(cls, label: str) -> Personal:
        run = f"{label}{uuid.uuid4().hex[:8]}"
        rng = random.Random(run)
        token = ".".join(
            (_b64('{"alg":"HS256","typ":"JWT"}'), _b64(f'{{"sub":"{run}"}}'), _b64(f"sig-{run}-" * 3))
        )
        return cls(
            run=run,
            email=f"jane.{run}@example.com",
            phone=f"+44 20 7946 {rng.randrange(10000):04d}",
            card=_card(rng),
            token=token,
        )

    def fragments(self) -> list[str]:
        return [
            self.email,
            self.email.split("@")[0],
            self.phone,
            self.phone.replace(" ", ""),
            self.phone[4:],  # without the country code
            self.card,
            self.card.replace(" ", ""),
            self.token,
            *self.token.split(".")[1:],  # the header is the same in every JWT; payload and signature are not
        ]


def assert_none_stored(answer: str, personal: Personal, where: str) -> None:
    leaked = [fragment for fragment in personal.fragments() if fragment in answer]
    assert not leaked, f"{where} stored {leaked}: {answer[:2000]}"


def _get(url: str, params: dict[str, str] | None = None, **headers: str) -> str:
    response = httpx.get(url, params=params, headers=headers, timeout=15)
    response.raise_for_status()
    return response.text


def _loki_raw(loki: str, logql: str) -> str:
    now = time.time_ns()
    return _get(
        f"{loki}/loki/api/v1/query_range",
        {"query": logql, "start": str(now - 3600 * 10**9), "end": str(now + 60 * 10**9), "limit": "5000"},
        **{"X-Loki-Response-Encoding-Flags": "categorize-labels"},
    )


def _prometheus_raw(prometheus: str, path: str, **params: str) -> str:
    now = time.time()
    return _get(f"{prometheus}{path}", {"start": str(now - 3600), "end": str(now + 60), **params})


@dataclass
class Stack:
    otlp: str
    tempo: Tempo
    loki: Loki
    prometheus: Prometheus
    urls: dict[str, str]


@pytest.fixture(scope="module")
def engines(stack: dict[str, str]) -> Stack:
    return Stack(
        stack["otlp"], Tempo(stack["tempo"]), Loki(stack["loki"]), Prometheus(stack["prometheus"]), stack
    )


@pytest.fixture(scope="module")
def pii_service(engines: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("pii") / "pii.log"
    with running(
        instrument_cmd("pii-e2e", *uvicorn_cmd("tests.pii_app:app", port)),
        port=port,
        env=instrumented_env(engines.otlp),
        log_path=log,
    ):
        yield f"http://127.0.0.1:{port}"


def _one_trace(tempo: Tempo, traceql: str) -> str:
    found: list[str] = []

    def search() -> bool:
        found[:] = tempo.search(traceql)
        return bool(found)

    wait_until(search, timeout=90, interval=2, what=f"a trace matching {traceql} in Tempo")
    [trace_id] = found
    return trace_id


def _statuses(stored_trace: str) -> list[str]:
    """Status messages of the spans in Tempo's answer for one trace."""
    return [
        span["status"]["message"]
        for batch in json.loads(stored_trace)["batches"]
        for scope in batch["scopeSpans"]
        for span in scope["spans"]
        if span.get("status", {}).get("message")
    ]


def _marker_values(spans: list[Any]) -> dict[str, Any]:
    return {
        key: value for span in spans for key, value in span.attributes.items() if key.startswith("customer.")
    }


def test_the_sdk_masks_personal_data_in_every_signal_before_it_leaves_the_service(
    engines: Stack, pii_service: str
) -> None:
    personal = Personal.new("sdk")
    order_id, request_id = f"ORD-{personal.run}", f"req-{personal.run}"
    response = httpx.post(
        f"{pii_service}/customers/{order_id}/contact",
        json={
            "run": personal.run,
            "email": personal.email,
            "phone": personal.phone,
            "card": personal.card,
            "token": personal.token,
        },
        headers={"X-Request-ID": request_id},
        timeout=15,
    )
    assert response.status_code == 200, response.text

    # Tempo: the request's trace, found by orderId, with masked attributes, event and status.
    trace_id = _one_trace(engines.tempo, f'{{ span.orderId = "{order_id}" }}')
    wait_until(
        lambda: "customer.email" in _marker_values(engines.tempo.trace(trace_id)),
        timeout=60,
        interval=2,
        what="the server span with the customer attributes",
    )
    assert _marker_values(engines.tempo.trace(trace_id)) == {
        "customer.email": "[REDACTED:email]",
        "customer.note": "call [REDACTED:phone], card [REDACTED:card]",
    }
    stored_trace = _get(f"{engines.urls['tempo']}/api/traces/{trace_id}")
    assert "Bearer [REDACTED:token]" in stored_trace
    assert _statuses(stored_trace) == ["card [REDACTED:card] declined for [REDACTED:email], [REDACTED:phone]"]
    assert_none_stored(stored_trace, personal, "Tempo")

    # Loki: loguru (message, extra, exception) and stdlib lines, found by orderId and requestId.
    by_order = f'{{service_name="pii-e2e"}} | orderId="{order_id}" | requestId="{request_id}"'
    wait_until(
        lambda: len(engines.loki.query(by_order)) >= 3, timeout=90, interval=2, what="the lines in Loki"
    )
    lines = engines.loki.query(by_order)
    assert [line.line for line in lines] == [
        f"pii run {personal.run} contact [REDACTED:email] phone [REDACTED:phone] card [REDACTED:card]",
        f"pii run {personal.run} sms to [REDACTED:phone] with Bearer [REDACTED:token]",
        f"pii run {personal.run} payment failed",
    ]
    assert (lines[0].metadata["contact"], lines[0].metadata["payment"]) == (
        "[REDACTED:email]",
        "card [REDACTED:card]",
    )
    assert (
        lines[2]
        .metadata["exception_message"]
        .startswith("card [REDACTED:card] declined for [REDACTED:email]")
    )
    assert_none_stored(_loki_raw(engines.urls["loki"], by_order), personal, "Loki")
    for fragment in (personal.email, personal.card, personal.phone):
        assert engines.loki.query(f'{{service_name=~".+"}} |= "{fragment}"') == []

    # Prometheus: the counter's series, found by its run label, with masked label values.
    selector = f'{{__name__=~"pii_checks.*", run="{personal.run}"}}'
    wait_until(lambda: bool(engines.prometheus.series(selector)), timeout=90, interval=2, what="the counter")
    [series] = engines.prometheus.series(selector)
    assert (series["contact"], series["note"]) == (
        "[REDACTED:email]",
        "card [REDACTED:card] [REDACTED:phone]",
    )
    assert "orderId" not in series and "requestId" not in series
    assert_none_stored(
        _prometheus_raw(engines.urls["prometheus"], "/api/v1/series", **{"match[]": selector}),
        personal,
        "Prometheus series",
    )
    for label in ("contact", "note"):
        values = _prometheus_raw(engines.urls["prometheus"], f"/api/v1/label/{label}/values")
        assert_none_stored(values, personal, f"Prometheus label {label}")
    exemplars = _prometheus_raw(
        engines.urls["prometheus"], "/api/v1/query_exemplars", query='{__name__=~".+", job="pii-e2e"}'
    )
    assert_none_stored(exemplars, personal, "Prometheus exemplars")


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _post(otlp: str, path: str, message: Any) -> None:
    response = httpx.post(
        f"{otlp}{path}",
        content=message.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=15,
    )
    assert response.status_code == 200, response.text


def test_the_collector_masks_personal_data_that_arrives_without_the_sdk(engines: Stack) -> None:
    personal = Personal.new("net")
    order_id = f"ORD-{personal.run}"
    text = f"mail {personal.email} phone {personal.phone} card {personal.card} auth Bearer {personal.token}"
    resource = Resource(attributes=[_kv("service.name", "pii-net")])
    now = time.time_ns()
    trace_id, span_id = uuid.uuid4().bytes, uuid.uuid4().bytes[:8]
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        name="contact",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now - 5_000_000,
        end_time_unix_nano=now,
        attributes=[_kv("orderId", order_id), _kv("note", text), _kv("customer.phone", personal.phone)],
        events=[
            Span.Event(time_unix_nano=now, name="exception", attributes=[_kv("exception.message", text)])
        ],
    )
    _post(
        engines.otlp,
        "/v1/traces",
        ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
        ),
    )
    record = LogRecord(
        time_unix_nano=now,
        severity_number=9,
        severity_text="INFO",
        body=AnyValue(string_value=f"{personal.run} {text}"),
        attributes=[
            _kv("orderId", order_id),
            _kv("contact", personal.email),
            _kv("userEmail", personal.email),
        ],
        trace_id=trace_id,
        span_id=span_id,
    )
    _post(
        engines.otlp,
        "/v1/logs",
        ExportLogsServiceRequest(
            resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=[record])])]
        ),
    )
    point = NumberDataPoint(
        time_unix_nano=now, as_double=1.0, attributes=[_kv("run", personal.run), _kv("note", text)]
    )
    _post(
        engines.otlp,
        "/v1/metrics",
        ExportMetricsServiceRequest(
            resource_metrics=[
                ResourceMetrics(
                    resource=resource,
                    scope_metrics=[
                        ScopeMetrics(metrics=[Metric(name="pii_net_probe", gauge=Gauge(data_points=[point]))])
                    ],
                )
            ]
        ),
    )

    hex_id = trace_id.hex()
    wait_until(lambda: bool(engines.tempo.trace(hex_id)), timeout=90, interval=2, what="the span in Tempo")
    [stored_span] = engines.tempo.trace(hex_id)
    assert (stored_span.attributes["orderId"], stored_span.attributes["customer.phone"]) == (order_id, "****")
    assert stored_span.attributes["note"] == "mail **** phone **** card **** auth ****"
    assert_none_stored(_get(f"{engines.urls['tempo']}/api/traces/{hex_id}"), personal, "Tempo")

    by_order = f'{{service_name="pii-net"}} | orderId="{order_id}"'
    wait_until(lambda: bool(engines.loki.query(by_order)), timeout=90, interval=2, what="the line in Loki")
    [line] = engines.loki.query(by_order)
    assert line.line == f"{personal.run} mail **** phone **** card **** auth ****"
    assert (line.metadata["contact"], line.metadata["userEmail"]) == ("****", "****")
    assert_none_stored(_loki_raw(engines.urls["loki"], by_order), personal, "Loki")

    selector = f'pii_net_probe{{run="{personal.run}"}}'
    wait_until(lambda: bool(engines.prometheus.series(selector)), timeout=90, interval=2, what="the gauge")
    [series] = engines.prometheus.series(selector)
    assert series["note"] == "mail **** phone **** card **** auth ****"
    assert_none_stored(
        _prometheus_raw(engines.urls["prometheus"], "/api/v1/series", **{"match[]": selector}),
        personal,
        "Prometheus",
    )
    assert (
        json.loads(_prometheus_raw(engines.urls["prometheus"], "/api/v1/label/note/values"))["status"]
        == "success"
    )
