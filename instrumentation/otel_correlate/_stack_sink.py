"""The demo's view of one order on the native stack: Tempo, Loki and Prometheus."""

from __future__ import annotations

from otel_correlate import _stack
from otel_correlate._demo import OrderReport
from otel_correlate._procs import wait_until
from otel_correlate._query import Loki, Prometheus, Tempo

DEMO_SERVICES = ("orders", "notifications")


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

    def report(self, order_id: str, *, timeout: float) -> OrderReport:
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
        rates = self.prometheus.query(
            'sum by (job) (rate(http_server_request_duration_seconds_count{job=~"orders|notifications"}[5m]))'
        )
        report.metrics += [
            f"request rate {r['metric'].get('job')}: {float(r['value'][1]):.2f}/s" for r in rates
        ]
        return report
