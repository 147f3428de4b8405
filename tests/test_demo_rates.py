"""The demo's request-rate line: the rate of the traffic just sent, read from Prometheus' samples.

Units only (no stack): the range selector, the Prometheus call it makes, and
the arithmetic on raw samples. ``./run demo`` shows the real thing.
"""

from __future__ import annotations

from typing import Any

import pytest

from otel_correlate import _query
from otel_correlate._demo import TrafficWindow
from otel_correlate._query import Prometheus, range_selector
from otel_correlate._stack_sink import REQUEST_COUNT, RequestRate, request_rates

#: Traffic of 0.8 s, shorter than the services' 1 s metric export interval.
SHORT_TRAFFIC = TrafficWindow(started=1_700_000_000.0, ended=1_700_000_000.8)


def samples(job: str, *points: tuple[float, int], instance: str = "a") -> dict[str, Any]:
    """One series as Prometheus' API returns it, times relative to the traffic's start."""
    return {
        "metric": {
            "__name__": "http_server_request_duration_seconds_count",
            "job": job,
            "instance": instance,
        },
        "values": [[SHORT_TRAFFIC.started + offset, str(value)] for offset, value in points],
    }


def test_range_selector_covers_the_window_to_the_millisecond() -> None:
    assert range_selector(REQUEST_COUNT, since=10.0, until=12.3456) == f"{REQUEST_COUNT}[2346ms]"
    assert range_selector("up", since=10.0, until=10.0) == "up[1ms]"


def test_samples_asks_for_the_raw_samples_since_a_time_evaluated_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, dict[str, str] | None]] = []
    answer = {"status": "success", "data": {"resultType": "matrix", "result": [samples("orders", (1.0, 5))]}}

    def fake_get(url: str, params: dict[str, str] | None = None, **_: Any) -> Any:
        asked.append((url, params))
        return answer

    monkeypatch.setattr(_query, "_get", fake_get)
    result = Prometheus("http://prom").samples("up", since=100.0, until=160.25)
    assert asked == [("http://prom/api/v1/query", {"query": "up[60250ms]", "time": "160.250"})]
    assert result == answer["data"]["result"]


def test_traffic_inside_one_export_interval_gets_its_real_rate_not_zero() -> None:
    # What made the demo print 0.00/s: every sample already holds all 80 requests, so
    # rate(...[5m]) sees no increase. The counter started at zero with the traffic.
    orders = samples("orders", (0.9, 80), (1.9, 80), (2.9, 80))
    assert request_rates([orders], SHORT_TRAFFIC) == {
        "orders": RequestRate("orders", 80, SHORT_TRAFFIC.seconds)
    }
    assert request_rates([orders], SHORT_TRAFFIC)["orders"].render() == (  # type: ignore[index]
        "request rate orders: 100.00/s (80 requests in 0.8s of traffic)"
    )


def test_each_job_sums_its_processes_last_counts() -> None:
    series = [
        samples("notifications", (1.0, 10), (3.0, 30), instance="worker-1"),
        samples("notifications", (1.0, 4), (3.0, 10), instance="worker-2"),
        samples("orders", (1.0, 50), (3.0, 120)),
    ]
    assert request_rates(series, SHORT_TRAFFIC) == {
        "notifications": RequestRate("notifications", 40, SHORT_TRAFFIC.seconds),
        "orders": RequestRate("orders", 120, SHORT_TRAFFIC.seconds),
    }


def test_no_rate_until_every_series_has_a_sample_taken_after_the_traffic_settled() -> None:
    # The traffic ended at 0.8 s; with the default 2 s settle, a sample at 2.5 s is too early.
    settled = samples("orders", (1.0, 50), (3.0, 120))
    early = samples("notifications", (1.0, 10), (2.5, 30))
    assert request_rates([settled, early], SHORT_TRAFFIC) is None
    assert request_rates([settled, early], SHORT_TRAFFIC, settle=1.5) is not None
    assert request_rates([], SHORT_TRAFFIC) == {}
