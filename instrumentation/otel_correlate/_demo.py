"""The demo: both services under opentelemetry-instrument, traffic, and one order followed end to end.

``otel-correlate demo`` starts the Telegram stub, the notifications service
(Flask/gunicorn) and the orders service (FastAPI/uvicorn) as real processes,
drives traffic (including failing requests), then prints for one orderId its
trace id, the services it crossed and its log lines.

Where the telemetry goes is a :class:`Sink`: the built-in OTLP receiver
(``--sink receiver``), or the native stack through our collector.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from otel_correlate._procs import (
    ROOT,
    free_port,
    gunicorn_cmd,
    instrument_cmd,
    instrumented_env,
    running,
    uvicorn_cmd,
    wait_until,
)


@dataclass
class OrderReport:
    """What one order left behind, as the sink saw it."""

    order_id: str
    trace_id: str = ""
    services: list[str] = field(default_factory=list)
    spans: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)

    def render(self) -> str:
        """The report as the demo prints it."""
        lines = [
            f"orderId        {self.order_id}",
            f"trace id       {self.trace_id}",
            f"services       {' -> '.join(self.services)}",
            "spans:",
            *(f"  {span}" for span in self.spans),
            "log lines:",
            *(f"  {line}" for line in self.log_lines),
        ]
        if self.metrics:
            lines += ["metrics with exemplars:", *(f"  {m}" for m in self.metrics)]
        return "\n".join(lines)


@dataclass(frozen=True)
class TrafficWindow:
    """When the demo's traffic ran, in Unix seconds (what the stack's samples are stamped with)."""

    started: float
    ended: float

    @property
    def seconds(self) -> float:
        """How long the traffic ran."""
        return self.ended - self.started


class Sink(Protocol):
    """Where the demo's telemetry goes and how one order is read back."""

    endpoint: str

    def report(self, order_id: str, *, timeout: float, traffic: TrafficWindow) -> OrderReport: ...


class ReceiverSink:
    """The built-in OTLP receiver (no stack needed)."""

    def __init__(self) -> None:
        from otel_correlate._receiver import OTLPReceiver

        self.receiver = OTLPReceiver()
        self.endpoint = self.receiver.endpoint

    def report(self, order_id: str, *, timeout: float, traffic: TrafficWindow) -> OrderReport:
        """The trace and log lines of ``order_id`` (the receiver keeps no metrics to rate ``traffic`` by)."""
        report = OrderReport(order_id)

        def trace_complete() -> bool:
            for trace_id, spans in self.receiver.traces().items():
                if any(s.attributes.get("orderId") == order_id and s.kind == 2 for s in spans):
                    services = {s.service for s in spans}
                    if {"orders", "notifications"} <= services:
                        report.trace_id = trace_id
                        return True
            return False

        wait_until(trace_complete, timeout=timeout, what=f"the trace of {order_id} in both services")
        spans = sorted(self.receiver.traces()[report.trace_id], key=lambda s: s.start_time_ns)
        report.services = list(dict.fromkeys(s.service for s in spans))
        report.spans = [f"{s.service:<14} {s.name}" for s in spans]
        wait_until(
            lambda: (
                {r.service for r in self.receiver.logs if r.attributes.get("orderId") == order_id}
                >= {"orders", "notifications"}
            ),
            timeout=timeout,
            what=f"log lines of {order_id} in both services",
        )
        report.log_lines = [
            f"{r.service:<14} {r.severity_text:<5} trace={r.trace_id[:8]} [requestId={r.attributes.get('requestId')}] {r.body}"
            for r in self.receiver.logs
            if r.attributes.get("orderId") == order_id
        ]
        return report


@dataclass(frozen=True)
class DemoURLs:
    """Base URLs of the running demo processes."""

    orders: str
    notifications: str
    telegram: str


#: Failed Telegram calls that open the notifications service's breaker in the demo.
BREAKER_FAILURE_THRESHOLD = 5


@contextmanager
def demo_services(
    sink_endpoint: str, log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[DemoURLs]:
    """Run the Telegram stub, notifications (gunicorn) and orders (uvicorn), all exporting to ``sink_endpoint``.

    ``env``: more variables for both services (they override the demo's own).
    """
    ports = {name: free_port() for name in ("orders", "notifications", "telegram")}
    common = {
        "NOTIFICATIONS_URL": f"http://127.0.0.1:{ports['notifications']}",
        "OTEL_CORRELATE_TELEGRAM_ENABLED": "true",
        "OTEL_CORRELATE_TELEGRAM_API_URL": f"http://127.0.0.1:{ports['telegram']}",
        "OTEL_CORRELATE_TELEGRAM_BOT_TOKEN": "demo-token",
        "OTEL_CORRELATE_TELEGRAM_CHAT_ID": "1000",
        "OTEL_CORRELATE_DEAD_LETTER_FILE": str(log_dir / "dead-letters.jsonl"),
        # Demo timings: a failing provider shows retries, an open breaker and dead letters within seconds.
        "OTEL_CORRELATE_TELEGRAM_TIMEOUT": "2",
        "OTEL_CORRELATE_RETRY_BASE_DELAY": "0.2",
        "OTEL_CORRELATE_BREAKER_FAILURE_THRESHOLD": str(BREAKER_FAILURE_THRESHOLD),
        "OTEL_CORRELATE_BREAKER_RECOVERY_TIMEOUT": "15",
        **(env or {}),
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        stack.enter_context(
            running(
                [
                    sys.executable,
                    str(ROOT / "examples" / "telegram_stub.py"),
                    "--port",
                    str(ports["telegram"]),
                ],
                port=ports["telegram"],
                env={"PYTHONPATH": str(ROOT)},
                log_path=log_dir / "telegram.log",
            )
        )
        stack.enter_context(
            running(
                instrument_cmd(
                    "notifications", *gunicorn_cmd("examples.notifications.app:app", ports["notifications"])
                ),
                port=ports["notifications"],
                env=instrumented_env(sink_endpoint, **common),
                log_path=log_dir / "notifications.log",
            )
        )
        stack.enter_context(
            running(
                instrument_cmd("orders", *uvicorn_cmd("examples.orders.app:app", ports["orders"])),
                port=ports["orders"],
                env=instrumented_env(sink_endpoint, **common),
                log_path=log_dir / "orders.log",
            )
        )
        yield DemoURLs(
            *(f"http://127.0.0.1:{ports[name]}" for name in ("orders", "notifications", "telegram"))
        )


def run_demo(sink: Sink, *, orders: int = 20, log_dir: Path, timeout: float = 60.0) -> OrderReport:
    """Drive the demo services into ``sink`` and report on the first order created."""
    sys.path.insert(0, str(ROOT))
    from examples import traffic

    with demo_services(sink.endpoint, log_dir) as urls:
        started = time.time()
        result = traffic.run(urls.orders, orders=orders)
        window = TrafficWindow(started, time.time())
        print(
            f"traffic: {len(result.order_ids)} orders created, responses by status {dict(sorted(result.statuses.items()))} "
            f"in {window.seconds:.1f}s",
            flush=True,
        )
        if not result.order_ids:
            raise RuntimeError(f"no order was created; see the service logs in {log_dir}")
        return sink.report(result.order_ids[0], timeout=timeout, traffic=window)
