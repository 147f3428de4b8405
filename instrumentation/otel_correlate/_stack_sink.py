"""The demo's view of one order on the native stack: Tempo, Loki and Prometheus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from otel_correlate import _stack
from otel_correlate._demo import OrderReport, TrafficWindow
from otel_correlate._procs import wait_until
from otel_correlate._query import Loki, Prometheus, Tempo

DEMO_SERVICES = ("orders", "notifications")
#: Requests each demo process served: one cumulative series per process, from zero at its start.
REQUEST_COUNT = 'http_server_request_duration_seconds_count{job=~"orders|notifications"}'
#: A sample taken this long after the traffic ended holds all of it: the demo services export
#: metrics every second (``OTEL_METRIC_EXPORT_INTERVAL=1000``), so this is two exports.
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class RequestRate:
    """Requests one service served during the demo's traffic, as Prometheus stored them."""

    job: str
    requests: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        return (
            f"request rate {self.job}: {self.per_second:.2f}/s "
            f"({self.requests} requests in {self.seconds:.1f}s of traffic)"
        )


def request_rates(
    series: list[dict[str, Any]], traffic: TrafficWindow, *, settle: float = SETTLE_SECONDS
) -> dict[str, RequestRate] | None:
    """Each job's request rate while the demo's traffic ran, or None until Prometheus has all of it.

    ``series`` are the raw samples of :data:`REQUEST_COUNT` taken since the traffic
    started (:meth:`Prometheus.samples`), so series of earlier runs are left out.
    ``rate(...[5m])`` cannot measure a few seconds of traffic from fresh processes:
    each series reaches Prometheus with its first export already holding the
    requests served so far, no earlier sample exists to increase from, and the
    rest is spread over five minutes; traffic shorter than one export interval
    reads 0/s. The demo starts its services itself, though, so their counters
    start at zero with the traffic: the last sample of each series is the number
    of requests it served, and over the traffic's duration that is its rate.

    Example:
        >>> window = TrafficWindow(started=100.0, ended=104.0)
        >>> series = [{"metric": {"job": "orders"}, "values": [[101.0, "20"], [106.5, "80"]]}]
        >>> request_rates(series, window)["orders"].render()
        'request rate orders: 20.00/s (80 requests in 4.0s of traffic)'
        >>> request_rates(series, window, settle=3.0) is None  # the last sample is too early
        True
    """
    settled_at = traffic.ended + settle
    requests: dict[str, int] = {}
    for one in series:
        last_time, last_value = max(one["values"], key=lambda sample: float(sample[0]))
        if float(last_time) < settled_at:
            return None
        job = str(one["metric"].get("job", "?"))
        requests[job] = requests.get(job, 0) + round(float(last_value))
    return {job: RequestRate(job, count, traffic.seconds) for job, count in sorted(requests.items())}


class StackSink:
    """Telemetry goes to our collector; the report is read back from the engines' query APIs."""

    def __init__(self) -> None:
        urls = _stack.endpoints()
        self.endpoint = urls["otlp"]
        self.tempo, self.loki = Tempo(urls["tempo"]), Loki(urls["loki"])
        self.prometheus = Prometheus(urls["prometheus"])

    @classmethod
    def from_running_stack(cls) -> StackSink:
        """The sink, once every engine of the stack answers ready (``otel-correlate stack up``)."""
        not_ready = {name: line for name, line in _stack.status().items() if not line.endswith(", ready")}
        if not_ready:
            details = ", ".join(f"{name}: {line}" for name, line in not_ready.items())
            raise RuntimeError(f"the stack is not ready ({details}); start it with `otel-correlate stack up`")
        return cls()

    def report(self, order_id: str, *, timeout: float, traffic: TrafficWindow) -> OrderReport:
        """The trace, log lines and exemplars of ``order_id``, and each service's rate during ``traffic``."""
        report = OrderReport(order_id)

        def trace_found() -> bool:
            for trace_id in self.tempo.search(f'{{ span.orderId = "{order_id}" }}'):
                spans = self.tempo.trace(trace_id)
                if {s.service for s in spans} >= set(DEMO_SERVICES):
                    report.trace_id = trace_id
                    report.services = list(dict.fromkeys(s.service for s in spans))
                    report.spans = [f"{s.service:<14} {s.name}" for s in spans]
                    return True
            return False

        wait_until(trace_found, timeout=timeout, interval=1.0, what=f"Tempo to hold the trace of {order_id}")
        logql = f'{{service_name=~"{"|".join(DEMO_SERVICES)}"}} | orderId="{order_id}"'

        def logs_found() -> bool:
            lines = self.loki.query(logql)
            if {line.labels.get("service_name") for line in lines} >= set(DEMO_SERVICES):
                report.log_lines = [
                    f"{line.labels.get('service_name', '?'):<14} trace={line.metadata.get('trace_id', '')[:8]} "
                    f"[requestId={line.metadata.get('requestId')}] {line.line}"
                    for line in lines
                ]
                return True
            return False

        wait_until(
            logs_found, timeout=timeout, interval=1.0, what=f"Loki to hold the log lines of {order_id}"
        )
        report.log_lines.insert(0, f"LogQL: {logql}")

        def metrics_found() -> bool:
            found = self.prometheus.exemplars(
                'http_server_request_duration_seconds_bucket{job=~"orders|notifications"}'
            )
            if not found:
                return False
            report.metrics = [
                f"{series['seriesLabels'].get('job')} {series['seriesLabels'].get('http_route', '')} "
                f"le={series['seriesLabels'].get('le')} exemplar trace_id={ex['labels'].get('trace_id')}"
                for series in found[:5]
                for ex in series["exemplars"][:1]
            ]
            return True

        wait_until(
            metrics_found, timeout=timeout, interval=1.0, what="Prometheus exemplars on request durations"
        )
        rates: dict[str, RequestRate] = {}

        def rates_found() -> bool:
            found = request_rates(self.prometheus.samples(REQUEST_COUNT, since=traffic.started), traffic)
            if found is None or not set(DEMO_SERVICES) <= set(found):
                return False
            rates.update(found)
            return True

        wait_until(
            rates_found,
            timeout=timeout,
            interval=1.0,
            what=f"Prometheus samples of {REQUEST_COUNT} taken {SETTLE_SECONDS:g}s after the traffic ended",
        )
        report.metrics += [rates[job].render() for job in sorted(rates)]
        return report
