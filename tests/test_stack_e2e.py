"""End to end on the real stack: our collector, Tempo, Loki, Prometheus, read through their own APIs.

The demo services run under opentelemetry-instrument and export OTLP to the
collector the launcher started; every assertion is a query to an engine.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from otel_correlate import _stack
from otel_correlate._demo import demo_services
from otel_correlate._procs import wait_until
from otel_correlate._query import Loki, Prometheus, Tempo

pytestmark = pytest.mark.e2e
SERVICES = {"orders", "notifications"}


@dataclass
class Running:
    orders_url: str
    tempo: Tempo
    loki: Loki
    prometheus: Prometheus
    order_id: str
    request_id: str


def _background_traffic(orders_url: str, stop: threading.Event) -> None:
    """Steady traffic while the module runs: rates need samples over time, errors included."""
    with httpx.Client(base_url=orders_url, timeout=15) as client:
        index = 0
        while not stop.wait(0.2):
            headers = {"X-Simulate-Failure": "1"} if index % 10 == 9 else {}
            try:  # one slow answer on a loaded machine must not end the traffic the rate tests wait for
                client.post("/orders", json={"customer": f"bg-{index}", "amount": 5}, headers=headers)
                client.get("/orders/ORD-missing")
            except httpx.HTTPError:
                pass
            index += 1


@pytest.fixture(scope="module")
def running(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    engines = stack
    # The exporters retry a batch for OTEL_EXPORTER_OTLP_TIMEOUT seconds (10 by default: the last try
    # about 7 s after the first failure). The collector restart below must not outlast that on a
    # loaded machine; 30 s keeps trying for about 15-23 s.
    exporters = {"OTEL_EXPORTER_OTLP_TIMEOUT": "30"}
    with demo_services(engines["otlp"], tmp_path_factory.mktemp("services"), exporters) as urls:
        client = httpx.Client(base_url=urls.orders, timeout=15)
        created = client.post(
            "/orders", json={"customer": "e2e", "amount": 42}, headers={"X-Request-ID": "e2e-req-1"}
        )
        assert created.status_code == 201, created.text
        order_id = created.json()["orderId"]
        assert client.post(f"/orders/{order_id}/status", json={"status": "paid"}).status_code == 200
        stop = threading.Event()
        traffic = threading.Thread(target=_background_traffic, args=(urls.orders, stop), daemon=True)
        traffic.start()
        try:
            yield Running(
                urls.orders,
                Tempo(engines["tempo"]),
                Loki(engines["loki"]),
                Prometheus(engines["prometheus"]),
                order_id,
                "e2e-req-1",
            )
        finally:
            stop.set()
            traffic.join(timeout=30)


def test_traceql_finds_the_order_trace_with_spans_of_both_services(running: Running) -> None:
    found: dict[str, list[object]] = {}

    def complete() -> bool:
        for trace_id in running.tempo.search(f'{{ span.orderId = "{running.order_id}" }}'):
            spans = running.tempo.trace(trace_id)
            if {s.service for s in spans} >= SERVICES:
                found[trace_id] = spans  # type: ignore[assignment]
                return True
        return False

    wait_until(
        complete, timeout=90, interval=2, what="Tempo to return the order's trace across both services"
    )
    [(trace_id, spans)] = [(k, v) for k, v in found.items()][:1]
    assert all(s.trace_id == trace_id for s in spans)  # type: ignore[attr-defined]
    assert {s.attributes.get("orderId") for s in spans} == {running.order_id}  # type: ignore[attr-defined]


def test_logql_by_order_id_returns_both_services_lines_with_one_trace_id(running: Running) -> None:
    query = f'{{service_name="orders"}} | orderId="{running.order_id}"'
    wait_until(
        lambda: len(running.loki.query(query)) >= 2, timeout=60, interval=2, what="the order's lines in Loki"
    )
    orders_lines = running.loki.query(query)
    assert [line.line for line in orders_lines] == [
        "order created for e2e amount 42.0",
        "order status changed new -> paid",
    ]
    first = orders_lines[0]
    assert first.labels["service_name"] == "orders"
    assert first.metadata["requestId"] == "e2e-req-1"
    assert "orderId" not in first.labels and "requestId" not in first.labels
    created_trace = first.metadata["trace_id"]
    notifications = running.loki.query(f'{{service_name="notifications"}} | orderId="{running.order_id}"')
    same_trace = [line.line for line in notifications if line.metadata.get("trace_id") == created_trace]
    assert same_trace == [
        f"sending notification: Order {running.order_id}: created",
        "telegram notification sent after 1 attempt(s)",
        "notification sent",
    ]


def test_prometheus_has_rates_errors_latency_and_exemplars_linking_to_tempo(running: Running) -> None:
    rate = 'sum by (job) (rate(http_server_request_duration_seconds_count{job=~"orders|notifications"}[5m]))'
    wait_until(
        lambda: {r["metric"]["job"] for r in running.prometheus.query(rate)} >= SERVICES,
        timeout=90,
        interval=2,
        what="request rates of both services",
    )
    error_ratio = (
        'sum(rate(http_server_request_duration_seconds_count{job="orders",http_response_status_code=~"5.."}[1m]))'
        ' / sum(rate(http_server_request_duration_seconds_count{job="orders"}[1m]))'
    )

    def ratio() -> float:
        result = running.prometheus.query(error_ratio)
        return float(result[0]["value"][1]) if result else float("nan")

    wait_until(lambda: 0 < ratio() < 1, timeout=90, interval=2, what="a non-zero error ratio for orders")
    p95 = running.prometheus.query(
        'histogram_quantile(0.95, sum by (le) (rate(http_server_request_duration_seconds_bucket{job="orders"}[5m])))'
    )
    assert p95 and float(p95[0]["value"][1]) > 0
    exemplars = running.prometheus.exemplars('http_server_request_duration_seconds_bucket{job="orders"}')
    trace_ids = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
    assert trace_ids, "the request-duration histogram carries exemplars"
    assert any(running.tempo.trace(trace_id) for trace_id in list(trace_ids)[:10]), (
        "an exemplar's trace is in Tempo"
    )


def test_service_graph_has_the_orders_to_notifications_edge(running: Running) -> None:
    edge = 'traces_service_graph_request_total{client="orders",server="notifications"}'
    wait_until(
        lambda: bool(running.prometheus.query(edge)), timeout=120, interval=3, what="the service-graph edge"
    )


def test_no_prometheus_series_and_no_loki_label_carries_a_business_key(running: Running) -> None:
    wait_until(
        lambda: bool(running.prometheus.query('orders_created_total{job="orders"}')),
        timeout=60,
        interval=2,
        what="business metrics in Prometheus",
    )
    for key in ("orderId", "requestId", "order_id", "request_id"):
        assert running.prometheus.series(f'{{{key}!=""}}') == []
    assert not {"orderId", "requestId", "trace_id", "span_id"} & set(running.loki.label_names())


#: Unique per run, so lines of an earlier run on a reused stack are never counted.
RUN = uuid.uuid4().hex[:8]


def _count_lines(loki: Loki, marker: str) -> int:
    return len(loki.query(f'{{service_name="orders"}} |= "order created" | requestId=~"{marker}-.*"'))


def test_a_loki_outage_loses_no_log_line(running: Running) -> None:
    client = httpx.Client(base_url=running.orders_url, timeout=15)
    _stack.down(names=["loki"])
    try:
        for index in range(40):
            response = client.post(
                "/orders",
                json={"customer": "outage", "amount": 1},
                headers={"X-Request-ID": f"loki-outage-{RUN}-{index}"},
            )
            assert response.status_code == 201
        time.sleep(30)  # Loki stays down for 30 s while the collector queues
    finally:
        _stack.up(names=["loki"])
    wait_until(
        lambda: _count_lines(running.loki, f"loki-outage-{RUN}") >= 40,
        timeout=120,
        interval=2,
        what="the 40 lines sent during the outage",
    )
    assert _count_lines(running.loki, f"loki-outage-{RUN}") == 40


def test_a_collector_restart_under_traffic_loses_nothing(running: Running) -> None:
    sent: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=running.orders_url, timeout=15) as client:
            index = 0
            while not stop.is_set() and index < 400:
                response = client.post(
                    "/orders",
                    json={"customer": "restart", "amount": 1},
                    headers={"X-Request-ID": f"restart-{RUN}-{index}"},
                )
                assert response.status_code == 201
                sent.append(index)
                index += 1
                time.sleep(0.02)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(2)
        _stack.down(names=["collector"])
        time.sleep(1)
        _stack.up(names=["collector"])
        time.sleep(2)
    finally:
        stop.set()
        worker.join(timeout=60)
    total = len(sent)
    assert total > 20
    wait_until(
        lambda: _count_lines(running.loki, f"restart-{RUN}") >= total,
        timeout=120,
        interval=2,
        what=f"all {total} lines sent around the collector restart",
    )
    assert _count_lines(running.loki, f"restart-{RUN}") == total
