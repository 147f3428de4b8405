"""HealthMonitor: concurrent checks with timeouts, statuses, telemetry, the schedule, ready-made checks."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from otel_correlate._capture import TelemetryCapture
from otel_correlate._health import (
    CheckOutcome,
    CheckStatus,
    DeploymentInfo,
    HealthMonitor,
    OverallStatus,
    health_monitor,
)
from otel_correlate._health_checks import collector_check, http_check, sql_check
from otel_correlate._health_endpoints import Action, parse_action, resolve_prefix


def statuses(monitor: HealthMonitor) -> dict[str, str]:
    report = monitor.run()
    return {r.name: r.status.value for r in report.results} | {"overall": report.overall.value}


def test_overall_status_follows_criticality() -> None:
    monitor = HealthMonitor()
    monitor.add("db", lambda: CheckOutcome.passed())
    assert statuses(monitor) == {"db": "pass", "overall": "healthy"}
    monitor.add("cache", lambda: "warn", critical=False)
    assert statuses(monitor) == {"db": "pass", "cache": "warn", "overall": "degraded"}
    monitor.remove("cache")
    monitor.add("search", lambda: False, critical=False)
    assert statuses(monitor) == {"db": "pass", "search": "fail", "overall": "degraded"}
    monitor.add("payments", lambda: CheckOutcome.failed(error="down"))
    assert statuses(monitor) == {"db": "pass", "search": "fail", "payments": "fail", "overall": "unhealthy"}
    assert [OverallStatus(s).http_status for s in ("healthy", "degraded", "unhealthy")] == [200, 206, 503]


def test_checks_run_concurrently_each_with_its_timeout() -> None:
    monitor = HealthMonitor(timeout=0.3)

    async def slow_async() -> CheckOutcome:
        await asyncio.sleep(5)
        return CheckOutcome.passed()

    release = threading.Event()

    def hung_sync() -> CheckOutcome:
        release.wait(5)
        return CheckOutcome.passed()

    def quick() -> str:
        time.sleep(0.2)
        return "pass"

    monitor.add("slow_async", slow_async)
    monitor.add("hung_sync", hung_sync, critical=False)
    for name in ("quick_a", "quick_b", "quick_c", "quick_d"):
        monitor.add(name, quick, timeout=5)  # far from its cut-off on a loaded machine
    monitor.add("own_timeout", slow_async, timeout=0.1, critical=False)
    started = time.monotonic()
    report = monitor.run()
    elapsed = time.monotonic() - started
    release.set()
    # one after another they would take at least 4 x 0.2 + 0.3 + 0.3 + 0.1 = 1.5 s
    assert elapsed < 1.4, "checks must run concurrently and be cut off at their timeout"
    results = {r.name: (r.status, dict(r.details)) for r in report.results}
    assert results == {
        "slow_async": (CheckStatus.FAIL, {"error": "timed out after 0.3 s"}),
        "hung_sync": (CheckStatus.FAIL, {"error": "timed out after 0.3 s"}),
        "quick_a": (CheckStatus.PASS, {}),
        "quick_b": (CheckStatus.PASS, {}),
        "quick_c": (CheckStatus.PASS, {}),
        "quick_d": (CheckStatus.PASS, {}),
        "own_timeout": (CheckStatus.FAIL, {"error": "timed out after 0.1 s"}),
    }
    assert report.overall is OverallStatus.UNHEALTHY
    assert 150 < next(r.response_time_ms for r in report.results if r.name == "quick_a") < 1400


def test_a_check_that_raises_or_returns_nonsense_fails_with_the_reason() -> None:
    monitor = HealthMonitor()
    monitor.add("raises", lambda: 1 / 0)
    monitor.add("nonsense", lambda: 42)
    details = {r.name: dict(r.details) for r in monitor.run().results}
    assert details == {
        "raises": {"error": "ZeroDivisionError: division by zero"},
        "nonsense": {
            "error": "the check returned 42; return a CheckOutcome, 'pass', 'warn', 'fail' or a bool"
        },
    }


def test_registry_rejects_duplicates_and_bad_timeouts() -> None:
    monitor = HealthMonitor()

    @monitor.check()
    def database() -> str:
        return "pass"

    with pytest.raises(ValueError, match="a health check named 'database' is registered already"):
        monitor.add("database", database)
    with pytest.raises(ValueError, match=r"timeout=0 is not valid: use seconds > 0"):
        HealthMonitor(timeout=0)
    assert [c.name for c in monitor.checks] == ["database"]
    assert health_monitor() is health_monitor()


def test_report_json_has_the_seed_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_DEPLOYMENT_VERSION", "1.2.3")
    monkeypatch.setenv("OTEL_CORRELATE_DEPLOYMENT_ID", "dpl_42")
    monkeypatch.setenv("OTEL_CORRELATE_REGION", "fra1")
    monitor = HealthMonitor()
    monitor.add("database", lambda: CheckOutcome.passed(provider="postgresql"))
    report = monitor.run()
    body = report.to_json(deployment=monitor.deployment, request_id="req-1")
    [result] = report.results
    assert body == {
        "timestamp": report.timestamp,
        "requestId": "req-1",
        "deployment": {
            "version": "1.2.3",
            "deploymentId": "dpl_42",
            "timestamp": monitor.deployment.timestamp,
            "region": "fra1",
            "status": "healthy",
            "checks": [{"name": "database", "status": "pass", "critical": True}],
        },
        "services": {
            "database": {
                "name": "database",
                "status": "pass",
                "responseTime": round(result.response_time_ms, 1),
                "details": {"provider": "postgresql"},
                "lastChecked": result.last_checked,
            }
        },
        "summary": {
            "overallStatus": "healthy",
            "totalChecks": 1,
            "passedChecks": 1,
            "failedChecks": 0,
            "warningChecks": 0,
        },
    }
    assert DeploymentInfo(version="x").version == "x"


def test_each_run_is_a_span_and_every_result_a_metric(otel_capture: TelemetryCapture) -> None:
    monitor = HealthMonitor()
    monitor.add("m_db", lambda: "pass")
    monitor.add("m_cache", lambda: "warn", critical=False)
    monitor.add("m_queue", lambda: CheckOutcome.failed(error="broker down"))
    monitor.run()
    spans = {s.name: s for s in otel_capture.spans()}
    run = spans["health.deployment"]
    assert dict(run.attributes or {}) == {
        "health.status": "unhealthy",
        "health.checks.total": 3,
        "health.checks.failed": 1,
        "health.checks.warning": 1,
    }
    assert run.status.status_code.name == "ERROR"
    queue = spans["health.check m_queue"]
    assert queue.parent is not None and queue.parent.span_id == run.context.span_id
    assert dict(queue.attributes or {}) == {
        "health.check.name": "m_queue",
        "health.check.critical": True,
        "health.check.status": "fail",
    }
    assert queue.status.description == "broker down"
    points = otel_capture.metrics()
    gauges = sorted(
        (tuple(sorted(p.attributes.items())), p.value)
        for p in points
        if p.name == "health.check.status" and str(p.attributes["check"]).startswith("m_")
    )
    assert gauges == [
        ((("check", "m_cache"), ("critical", False)), 0.5),
        ((("check", "m_db"), ("critical", True)), 1.0),
        ((("check", "m_queue"), ("critical", True)), 0.0),
    ]
    durations = sorted(
        (p.unit, tuple(sorted(p.attributes.items())), p.count)
        for p in points
        if p.name == "health.check.duration" and str(p.attributes["check"]).startswith("m_")
    )
    assert durations == [
        ("s", (("check", "m_cache"), ("status", "warn")), 1),
        ("s", (("check", "m_db"), ("status", "pass")), 1),
        ("s", (("check", "m_queue"), ("status", "fail")), 1),
    ]
    assert [(p.unit, p.attributes, p.value) for p in points if p.name == "health.status"] == [
        ("{status}", {}, 0.0)
    ]
    # Annotation units keep Prometheus names free of a "_ratio" suffix: health_check_status, health_status.
    assert {p.unit for p in points if p.name == "health.check.status"} == {"{status}"}


def test_background_monitoring_reruns_and_can_be_rescheduled() -> None:
    calls: list[float] = []
    monitor = HealthMonitor(interval_unit=0.05)  # one "minute" is 50 ms here
    monitor.add("counted", lambda: calls.append(time.monotonic()) or "pass")
    monitor.start_monitoring(1)
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) >= 3
    assert monitor.last_report is not None and monitor.monitoring_interval == 1
    with pytest.raises(ValueError, match=r"intervalMinutes=0 is out of range: use 1 to 1440"):
        monitor.start_monitoring(0)
    with pytest.raises(ValueError, match=r"intervalMinutes=True must be an integer"):
        monitor.start_monitoring(True)
    assert monitor.monitoring_interval == 1
    before = len(calls)
    monitor.start_monitoring(1440)
    time.sleep(1.0)  # the 1-minute schedule (50 ms here) would have run about 20 times
    assert len(calls) - before <= 2, "a 1440-minute schedule must not rerun within a second"
    monitor.stop_monitoring()
    assert monitor.monitoring_interval is None


def test_background_failures_are_logged_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = HealthMonitor(interval_unit=0.05)
    runs: list[int] = []

    def broken_run() -> Any:
        runs.append(1)
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(monitor, "run", broken_run)
    monitor.start_monitoring(1)
    deadline = time.monotonic() + 5
    while len(runs) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(runs) >= 2, "the schedule survives a failing run"
    monitor.stop_monitoring()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"action": "force_check"}', Action("force_check")),
        (b'{"action": "start_monitoring", "intervalMinutes": 1}', Action("start_monitoring", 1)),
        (b'{"action": "start_monitoring", "intervalMinutes": 1440}', Action("start_monitoring", 1440)),
        (b"", 400),
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"action": "reboot"}', 400),
        (b"{}", 400),
        (b'{"action": "start_monitoring"}', 422),
        (b'{"action": "start_monitoring", "intervalMinutes": 0}', 422),
        (b'{"action": "start_monitoring", "intervalMinutes": 1441}', 422),
        (b'{"action": "start_monitoring", "intervalMinutes": "5"}', 422),
        (b'{"action": "start_monitoring", "intervalMinutes": 5.0}', 422),
        (b'{"action": "start_monitoring", "intervalMinutes": true}', 422),
    ],
)
def test_post_bodies_are_validated(raw: bytes, expected: Action | int) -> None:
    parsed = parse_action(raw)
    if isinstance(expected, Action):
        assert parsed == expected
    else:
        assert isinstance(parsed, tuple) and parsed[0] == expected
        assert parsed[1]["error"]


def test_prefix_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (resolve_prefix(None), resolve_prefix("/ops/"), resolve_prefix("")) == ("", "/ops", "")
    monkeypatch.setenv("OTEL_CORRELATE_HEALTH_PREFIX", "api/v1")
    assert resolve_prefix(None) == "/api/v1"


# --- ready-made checks, against real sockets ----------------------------------------------


class _Dependency(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(0.15)
        status = 503 if self.path == "/down" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def dependency() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dependency)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_http_check_passes_warns_and_fails(dependency: str) -> None:
    monitor = HealthMonitor(timeout=2)
    monitor.add("ok", http_check(f"{dependency}/ok?token=secret"))
    monitor.add("slow", http_check(f"{dependency}/slow", warn_after_ms=50), critical=False)
    monitor.add("down", http_check(f"{dependency}/down"))
    monitor.add("refused", http_check(f"http://127.0.0.1:{closed_port()}/"))
    results = {r.name: (r.status.value, dict(r.details)) for r in monitor.run().results}
    assert results["ok"] == ("pass", {"url": f"{dependency}/ok", "statusCode": 200})  # no query string shown
    assert results["slow"][0] == "warn" and results["slow"][1]["slow"].endswith("> 50 ms")
    assert results["down"] == ("fail", {"url": f"{dependency}/down", "statusCode": 503, "error": "HTTP 503"})
    assert results["refused"][0] == "fail" and results["refused"][1]["error"].startswith("ConnectError")


def test_sql_check_verifies_a_connection(tmp_path: Path) -> None:
    monitor = HealthMonitor(timeout=2)
    monitor.add("database", sql_check(f"sqlite:///{tmp_path / 'app.db'}"))
    monitor.add("missing", sql_check(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"))
    results = {r.name: (r.status.value, dict(r.details)) for r in monitor.run().results}
    assert results["database"] == (
        "pass",
        {"dialect": "sqlite", "database": str(tmp_path / "app.db"), "connection": "verified"},
    )
    assert results["missing"][0] == "fail" and "OperationalError" in results["missing"][1]["error"]


def test_collector_check_reads_the_otlp_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monitor = HealthMonitor(timeout=2)
        monitor.add("collector", collector_check(), critical=False)
        monitor.add("gone", collector_check(f"127.0.0.1:{closed_port()}"), critical=False)
        results = {r.name: (r.status.value, dict(r.details)) for r in monitor.run().results}
    assert results["collector"] == ("pass", {"endpoint": f"127.0.0.1:{port}", "protocol": "grpc"})
    assert results["gone"][0] == "fail" and results["gone"][1]["error"].startswith("cannot connect")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert asyncio.run(collector_check()()).details["endpoint"] in {"localhost:4318"}
