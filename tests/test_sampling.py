"""Trace sampling, the documented option that is not the default, on both demo services as real processes.

The orders service (FastAPI) samples its root spans by trace id
(``parentbased_traceidratio``), and the notifications service (Flask) follows the
decision it receives in ``traceparent``. What a team gives up is only the spans
of the requests not sampled: every request's log lines still carry its trace id
and business keys, every request is still measured, a trace is either recorded
by every service or by none, and no exemplar points at a trace that was not kept.
The last test asks the real engines: Tempo for the traces, Loki for the lines.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from otel_correlate._demo import demo_services
from otel_correlate._procs import (
    free_port,
    instrument_cmd,
    instrumented_env,
    running,
    uvicorn_cmd,
    wait_until,
)
from otel_correlate._query import Loki, StoredLogLine, Tempo
from otel_correlate._receiver import OTLPReceiver

pytestmark = pytest.mark.e2e

RATIO = 0.5
ORDERS = 24
SAMPLER = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(RATIO)}


def _sampled_by_ratio(trace_id: str) -> bool:
    """The SDK's ``TraceIdRatioBased`` rule: the trace id's lower 64 bits under ratio x 2**64."""
    return int(trace_id, 16) & (2**64 - 1) < round(RATIO * 2**64)


@dataclass
class Sampled:
    """What both services exported, and each order's trace id and requestId."""

    receiver: OTLPReceiver
    trace_of: dict[str, str]
    request_id_of: dict[str, str]


@pytest.fixture(scope="module")
def sampled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sampled]:
    """Both services sampling at RATIO, and the trace id and requestId of each of ORDERS orders."""
    log_dir: Path = tmp_path_factory.mktemp("sampled-demo")
    with OTLPReceiver() as receiver, demo_services(receiver.endpoint, log_dir, env=SAMPLER) as urls:
        request_ids = {}
        for n in range(ORDERS):
            request_id = f"sampling-{n}"
            response = httpx.post(
                f"{urls.orders}/orders",
                json={"customer": f"c{n}", "amount": n + 1},
                headers={"X-Request-ID": request_id},
                timeout=10,
            )
            assert response.status_code == 201
            assert response.json()["notified"] is True
            request_ids[response.json()["orderId"]] = request_id

        lines = {"notification sent", *(f"order created for c{n} amount {n + 1}.0" for n in range(ORDERS))}

        def order_logs() -> dict[tuple[str, str], str]:
            """(orderId, service) -> trace id of that service's log line for the order."""
            return {
                (r.attributes["orderId"], r.service): r.trace_id
                for r in receiver.logs
                if r.attributes.get("orderId") in request_ids and r.body in lines
            }

        wait_until(
            lambda: len(order_logs()) == 2 * ORDERS, timeout=30, what="both services' log line of every order"
        )
        traces = order_logs()
        trace_of = {order: traces[(order, "orders")] for order in request_ids}
        for order in request_ids:  # one trace id across both services, sampled or not
            assert traces[(order, "notifications")] == trace_of[order]
        kept = {trace_of[o] for o in request_ids if _sampled_by_ratio(trace_of[o])}

        def server_spans() -> set[tuple[str, str]]:
            return {(s.trace_id, s.service) for s in receiver.spans if s.kind == 2 and s.trace_id in kept}

        wait_until(
            lambda: server_spans() == {(t, s) for t in kept for s in ("orders", "notifications")},
            timeout=30,
            what="the server spans of both services for every sampled order",
        )

        def durations(service: str, route: str) -> int:
            counts = [
                m.count or 0
                for m in receiver.metrics
                if m.name == "http.server.request.duration"
                and m.service == service
                and m.attributes.get("http.route") == route
            ]
            return counts[-1] if counts else 0

        wait_until(
            lambda: (
                durations("orders", "/orders") == ORDERS and durations("notifications", "/notify") == ORDERS
            ),
            timeout=30,
            what="every request measured by both services",
        )
        yield Sampled(receiver, trace_of, request_ids)


def test_the_ratio_decides_per_trace_and_both_outcomes_occur(
    sampled: Sampled,
) -> None:
    receiver, orders = sampled.receiver, sampled.trace_of
    recorded = {s.trace_id for s in receiver.spans if s.attributes.get("orderId") in orders}
    expected = {trace for trace in orders.values() if _sampled_by_ratio(trace)}
    assert recorded == expected  # no unsampled order left a span, in either service
    assert 0 < len(expected) < ORDERS  # 24 trace ids at 0.5: both outcomes, all but surely


def test_a_sampled_trace_is_whole_in_both_services_with_the_keys_on_every_span(
    sampled: Sampled,
) -> None:
    receiver = sampled.receiver
    for order, trace in sampled.trace_of.items():
        spans = [s for s in receiver.spans if s.trace_id == trace]
        if not _sampled_by_ratio(trace):
            assert spans == []
            continue
        assert {s.service for s in spans if s.kind == 2} == {"orders", "notifications"}
        client_ids = {s.span_id for s in spans if s.service == "orders" and s.kind == 3}
        (downstream,) = [s for s in spans if s.service == "notifications" and s.kind == 2]
        assert downstream.parent_span_id in client_ids
        for span in spans:
            assert span.attributes.get("orderId") == order, span
            assert span.attributes.get("requestId") == sampled.request_id_of[order], span


def test_an_unsampled_order_keeps_its_log_lines_with_trace_id_and_keys(
    sampled: Sampled,
) -> None:
    receiver, orders = sampled.receiver, sampled.trace_of
    unsampled = {order for order, trace in orders.items() if not _sampled_by_ratio(trace)}
    assert unsampled
    for record in receiver.logs:
        order = record.attributes.get("orderId")
        if order not in unsampled:
            continue
        assert record.trace_id == orders[order]
        assert record.span_id != "0" * 16
        assert record.attributes["requestId"] == sampled.request_id_of[order]


def test_no_exemplar_points_at_a_trace_that_was_not_kept(
    sampled: Sampled,
) -> None:
    receiver, orders = sampled.receiver, sampled.trace_of
    recorded = {s.trace_id for s in receiver.spans}
    exemplars = [e["trace_id"] for m in receiver.metrics for e in m.exemplars]
    assert exemplars, "the sampled requests still leave exemplars"
    assert set(exemplars) <= recorded
    assert set(exemplars) & {t for t in orders.values() if _sampled_by_ratio(t)}


def test_on_the_real_stack_tempo_keeps_the_sampled_orders_whole_and_loki_every_orders_lines(
    stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Through our collector into the engines: what Tempo and Loki answer is what the README promises."""
    tempo, loki = Tempo(stack["tempo"]), Loki(stack["loki"])
    marker = f"smp-{uuid.uuid4().hex[:8]}"
    with demo_services(stack["otlp"], tmp_path_factory.mktemp("sampled-stack"), env=SAMPLER) as urls:
        orders = {}
        for n in range(12):
            response = httpx.post(
                f"{urls.orders}/orders",
                json={"customer": marker, "amount": n + 1},
                headers={"X-Request-ID": f"{marker}-{n}"},
                timeout=10,
            )
            assert response.status_code == 201
            orders[response.json()["orderId"]] = f"{marker}-{n}"

        def lines(service: str, text: str) -> dict[str, StoredLogLine]:
            """orderId -> the service's line ``text`` for one of these orders."""
            found = loki.query(f'{{service_name="{service}"}} | requestId=~"{marker}-.*"')
            return {line.metadata["orderId"]: line for line in found if line.line.startswith(text)}

        wait_until(
            lambda: (
                len(lines("orders", "order created"))
                == len(lines("notifications", "notification sent"))
                == 12
            ),
            timeout=90,
            interval=2,
            what="every order's lines of both services in Loki",
        )
        created, sent = lines("orders", "order created"), lines("notifications", "notification sent")
        assert set(created) == set(sent) == set(orders)
        for order, request_id in orders.items():  # every order's lines, sampled or not, with one trace id
            assert created[order].metadata["requestId"] == sent[order].metadata["requestId"] == request_id
            assert created[order].metadata["trace_id"] == sent[order].metadata["trace_id"]
            assert "orderId" not in created[order].labels and "trace_id" not in created[order].labels
        trace_of = {order: created[order].metadata["trace_id"] for order in orders}
        kept = {order for order, trace in trace_of.items() if _sampled_by_ratio(trace)}
        assert 0 < len(kept) < len(orders)  # 12 trace ids at 0.5: both outcomes, all but surely

        def whole(order: str) -> bool:
            servers = {s.service for s in tempo.trace(trace_of[order]) if s.kind == "SPAN_KIND_SERVER"}
            return servers == {"orders", "notifications"}

        wait_until(
            lambda: all(whole(order) for order in kept),
            timeout=90,
            interval=2,
            what="Tempo to hold every sampled order's trace across both services",
        )
        for order in kept:
            assert {s.attributes.get("orderId") for s in tempo.trace(trace_of[order])} == {order}
        for order in set(orders) - kept:  # the sampled ones arrived, so these would have too
            assert tempo.trace(trace_of[order]) == [], order


def test_a_ratio_the_sdk_cannot_use_is_warned_once_and_every_trace_is_kept(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "orders.log"
    bad = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "10%"}
    with (
        OTLPReceiver() as receiver,
        running(
            instrument_cmd("orders", *uvicorn_cmd("examples.orders.app:app", port)),
            port=port,
            env={**instrumented_env(receiver.endpoint), **bad},
            log_path=log,
        ),
    ):
        for n in range(10):  # the service answers, and nothing is sampled away
            response = httpx.get(
                f"http://127.0.0.1:{port}/orders/ORD-{n}", headers={"X-Request-ID": f"bad-{n}"}
            )
            assert response.status_code == 404
        wait_until(
            lambda: (
                {s.attributes.get("requestId") for s in receiver.spans if s.kind == 2}
                >= {f"bad-{n}" for n in range(10)}
            ),
            timeout=20,
            what="a server span for every request",
        )
    warnings = [line for line in log.read_text().splitlines() if "OTEL_TRACES_SAMPLER_ARG='10%'" in line]
    assert len(warnings) == 1, log.read_text()[-2000:]
    assert "keeps every trace" in warnings[0] and "OTEL_TRACES_SAMPLER_ARG=0.1" in warnings[0]
