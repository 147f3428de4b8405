"""Every query of every dashboard panel, run through the engines' own APIs on the real stack.

The demo services run against the stack with steady traffic (orders, 404s,
simulated 500s, and the health probe a load balancer would send), then a
failure scenario: the Telegram stub answers 500, so notifications fail, retry,
open the circuit breaker and end as dead letters. Then every panel target is
run as Grafana would run it with each variable at its "All" value (orderId =
an order created here): Prometheus /api/v1/query_range (instant for table
panels), Loki /loki/api/v1/query_range, Tempo /api/search. The test fails on
any query error and on any panel that returns nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from otel_correlate._demo import BREAKER_FAILURE_THRESHOLD, demo_services
from otel_correlate._procs import wait_until
from tests.dashboard_queries import (
    QueryResult,
    default_variables,
    engines,
    load_dashboards,
    run_dashboard,
)

pytestmark = pytest.mark.e2e
#: Data must show within this many seconds of the failure scenario (metrics export every 15 s,
#: rates need two samples, Tempo's service graph and the Loki ingester a little more).
DEADLINE_SECONDS = 150
#: How long the failing provider may take to see the breaker threshold of failed calls.
FAILURE_SECONDS = 60


@dataclass
class Traffic:
    order_id: str


def _background(orders_url: str, notifications_url: str, stop: threading.Event) -> None:
    """Orders, 404s, one simulated 500 in ten, and a health probe of both services every few seconds."""
    with httpx.Client(timeout=15) as client:
        index = 0
        while not stop.wait(0.2):
            try:
                headers = {"X-Simulate-Failure": "1"} if index % 10 == 9 else {}
                created = client.post(
                    f"{orders_url}/orders", json={"customer": f"dash-{index}", "amount": 5}, headers=headers
                )
                if created.status_code == 201 and index % 3 == 0:
                    order = created.json()["orderId"]
                    client.post(f"{orders_url}/orders/{order}/status", json={"status": "paid"})
                client.get(f"{orders_url}/orders/ORD-missing")
                if index % 15 == 0:
                    client.get(f"{orders_url}/health/deployment")
                    client.get(f"{notifications_url}/health/deployment")
            except httpx.HTTPError:
                pass  # a slow request under the failure scenario; the next round goes on
            index += 1


def _failed_calls(client: httpx.Client, telegram_url: str) -> int:
    """Calls the Telegram stub answered in error mode."""
    attempts = client.get(f"{telegram_url}/_stub/messages").json()["attempts"]
    return sum(1 for attempt in attempts if attempt["mode"] == "error")


@pytest.fixture(scope="module")
def traffic(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    with demo_services(stack["otlp"], tmp_path_factory.mktemp("dashboard-services")) as urls:
        client = httpx.Client(timeout=30)
        created = client.post(f"{urls.orders}/orders", json={"customer": "dashboards", "amount": 7})
        assert created.status_code == 201, created.text
        order_id = created.json()["orderId"]
        stop = threading.Event()
        thread = threading.Thread(
            target=_background, args=(urls.orders, urls.notifications, stop), daemon=True
        )
        thread.start()
        try:
            time.sleep(20)  # healthy samples first
            # Failure scenario: the provider fails, so notifications fail, retry, open the breaker, dead-letter.
            mode = client.post(f"{urls.telegram}/_stub/mode", json={"mode": "error", "status": 500})
            assert mode.status_code == 200, mode.text
            for index in range(8):
                client.post(f"{urls.orders}/orders", json={"customer": f"fail-{index}", "amount": 1})
            # With at most two messages in flight (the background loop and the orders above), the
            # breaker threshold of failed calls means a message was retried and the breaker opened.
            wait_until(
                lambda: _failed_calls(client, urls.telegram) >= BREAKER_FAILURE_THRESHOLD,
                timeout=FAILURE_SECONDS,
                interval=0.5,
                what=f"{BREAKER_FAILURE_THRESHOLD} calls answered with 500 by the Telegram stub "
                "(the failure scenario: retries, an open breaker, dead letters)",
            )
            time.sleep(5)  # the open breaker dead-letters the next messages at once
            client.post(f"{urls.telegram}/_stub/reset")
            yield Traffic(order_id)
        finally:
            stop.set()
            thread.join(timeout=30)
            client.close()


def _run_all(order_id: str) -> list[QueryResult]:
    results = []
    for board in load_dashboards():
        results += run_dashboard(board, default_variables(board, orderId=order_id), window_seconds=600)
    return results


def _empty_panels(results: list[QueryResult]) -> list[str]:
    by_panel: dict[tuple[str, str], int] = {}
    for result in results:
        key = (result.dashboard, result.panel)
        by_panel[key] = by_panel.get(key, 0) + result.series
    return [f"{d} / {p}" for (d, p), series in by_panel.items() if series == 0]


def test_every_panel_query_runs_and_every_panel_shows_data(traffic: Traffic) -> None:
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    while True:
        results = _run_all(traffic.order_id)
        errors = [r for r in results if r.error]
        empty = _empty_panels(results)
        # Errors are retried too: another test may be restarting an engine for a few seconds.
        if (not errors and not empty) or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert results and len({(r.dashboard, r.panel) for r in results}) >= 40
    assert not errors, "queries failed:\n" + "\n".join(r.describe() for r in errors)
    assert not empty, (
        "panels without data:\n"
        + "\n".join(r.describe() for r in results if f"{r.dashboard} / {r.panel}" in empty)
        + _pipeline_health()
    )


def _pipeline_health() -> str:
    """What the collector says about its metric exports: tells a lost write from data never made."""
    query = 'sum by (__name__) ({__name__=~"otelcol_exporter_(sent|send_failed)_metric_points.*"})'
    try:
        answer = httpx.get(f"{engines()['prometheus']}/api/v1/query", params={"query": query}, timeout=10)
        rows = answer.json()["data"]["result"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return f"\ncollector export counters unavailable: {exc}"
    return "\ncollector export counters: " + ", ".join(
        f"{row['metric']['__name__']}={row['value'][1]}" for row in rows
    )
