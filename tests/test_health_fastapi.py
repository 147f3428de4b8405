"""Health endpoints mounted on a FastAPI app that already has its own /health-like routes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from otel_correlate import RequestContextMiddleware
from otel_correlate._health import CheckOutcome, HealthMonitor
from otel_correlate._health_fastapi import health_router, mount_health_fastapi
from otel_correlate._resilience import CircuitBreaker

DEPLOYMENT = "/health/deployment"


def existing_app() -> FastAPI:
    """An app as the seed teams have it: its own /health and its own monitoring route."""
    app = FastAPI()

    @app.get("/health")
    def own_health() -> dict[str, str]:
        return {"status": "mine", "framework": "fastapi"}

    @app.get("/monitoring/summary")
    def own_summary() -> dict[str, str]:
        return {"summary": "mine"}

    @app.post("/orders/{order_id}")
    def create_order(order_id: str) -> dict[str, str]:
        return {"orderId": order_id}

    return app


def client_for(monitor: HealthMonitor, *, app: FastAPI | None = None) -> TestClient:
    app = app or FastAPI()
    mount_health_fastapi(app, monitor, prefix="")
    return TestClient(app, raise_server_exceptions=False)


def test_mounting_never_overrides_existing_routes() -> None:
    app = existing_app()
    monitor = HealthMonitor()
    mounted = mount_health_fastapi(app, monitor, prefix="")
    assert mounted == [
        "GET /health/deployment",
        "POST /health/deployment",
        "GET /monitoring/circuit-breakers",
    ]
    client = TestClient(app)
    assert client.get("/health").json() == {"status": "mine", "framework": "fastapi"}
    assert client.get("/monitoring/summary").json() == {"summary": "mine"}
    assert client.post("/orders/A-1").json() == {"orderId": "A-1"}
    assert client.get(DEPLOYMENT).status_code == 200
    assert mount_health_fastapi(app, monitor, prefix="") == []  # mounting twice adds nothing


def test_routes_of_included_routers_and_path_parameters_count_as_existing() -> None:
    from fastapi import APIRouter

    app = FastAPI()
    router = APIRouter()

    @router.get("/health/{component}")
    def component_health(component: str) -> dict[str, str]:
        return {"component": component}

    app.include_router(router)
    mounted = mount_health_fastapi(app, HealthMonitor(), prefix="")
    assert "GET /health/deployment" not in mounted and "POST /health/deployment" in mounted
    assert TestClient(app).get(DEPLOYMENT).json() == {"component": "deployment"}


def test_liveness_answers_fast_without_running_checks() -> None:
    monitor = HealthMonitor()
    monitor.add("slow", lambda: time.sleep(5) or "pass")
    client = client_for(monitor)
    started = time.monotonic()
    response = client.get("/health")
    assert time.monotonic() - started < 2.5  # running the check would take its 5 s
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "timestamp": response.json()["timestamp"]}
    assert monitor.last_report is None


def test_switched_off_by_flag_and_prefixed_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_HEALTH_ENABLED", "false")
    app = FastAPI()
    assert mount_health_fastapi(app, HealthMonitor()) == []
    assert TestClient(app).get(DEPLOYMENT).status_code == 404
    monkeypatch.setenv("OTEL_CORRELATE_HEALTH_ENABLED", "true")
    monkeypatch.setenv("OTEL_CORRELATE_HEALTH_PREFIX", "/ops/")
    assert mount_health_fastapi(app, HealthMonitor())[0] == "GET /ops/health"
    client = TestClient(app)
    assert client.get("/ops/health/deployment").status_code == 200
    assert client.get("/health").status_code == 404
    assert mount_health_fastapi(FastAPI(), HealthMonitor(), enabled=False) == []


def test_healthy_answers_200_with_the_full_report() -> None:
    monitor = HealthMonitor()
    monitor.add("database", lambda: CheckOutcome.passed(provider="postgresql"))
    response = client_for(monitor).get(DEPLOYMENT, headers={"X-Request-ID": "req-health-1"})
    assert response.status_code == 200
    body = response.json()
    assert (body["requestId"], body["deployment"]["status"]) == ("req-health-1", "healthy")
    assert body["services"]["database"]["details"] == {"provider": "postgresql"}
    assert body["summary"] == {
        "overallStatus": "healthy",
        "totalChecks": 1,
        "passedChecks": 1,
        "failedChecks": 0,
        "warningChecks": 0,
    }


@pytest.mark.parametrize(
    ("checks", "status", "summary"),
    [
        ([("cache", lambda: "warn", True)], 206, ("degraded", 0, 0, 1)),
        ([("search", lambda: "fail", False)], 206, ("degraded", 0, 1, 0)),
        ([("db", lambda: "fail", True), ("cache", lambda: "warn", False)], 503, ("unhealthy", 0, 1, 1)),
        ([("db", lambda: time.sleep(3) or "pass", True)], 503, ("unhealthy", 0, 1, 0)),
    ],
    ids=["warn-degraded", "noncritical-fail-degraded", "critical-fail-unhealthy", "timeout-unhealthy"],
)
def test_degraded_206_and_unhealthy_503(
    checks: list[tuple[str, Any, bool]], status: int, summary: tuple[Any, ...]
) -> None:
    monitor = HealthMonitor(timeout=1.5)  # far from the quick checks, short of the 3 s one
    for name, func, critical in checks:
        monitor.add(name, func, critical=critical)
    response = client_for(monitor).get(DEPLOYMENT)
    body = response.json()
    assert response.status_code == status
    got = body["summary"]
    assert (got["overallStatus"], got["passedChecks"], got["failedChecks"], got["warningChecks"]) == summary
    assert body["deployment"]["status"] == summary[0]
    if status == 503 and "timeout" in str(checks):
        assert body["services"]["db"]["details"] == {"error": "timed out after 0.2 s"}


def test_request_id_comes_from_the_request_context() -> None:
    app = FastAPI()
    app.add_middleware(RequestContextMiddleware)
    client = client_for(HealthMonitor(), app=app)
    response = client.get(DEPLOYMENT)
    assert response.json()["requestId"] == response.headers["X-Request-ID"]


def test_force_check_reruns_and_start_monitoring_schedules() -> None:
    runs: list[int] = []
    monitor = HealthMonitor(interval_unit=3600)
    monitor.add("counted", lambda: runs.append(1) or "pass")
    client = client_for(monitor)
    forced = client.post(DEPLOYMENT, json={"action": "force_check"})
    assert (forced.status_code, forced.json()["summary"]["totalChecks"], len(runs)) == (200, 1, 1)
    started = client.post(DEPLOYMENT, json={"action": "start_monitoring", "intervalMinutes": 7})
    assert (started.status_code, started.json()) == (
        202,
        {"action": "start_monitoring", "monitoring": {"active": True, "intervalMinutes": 7}},
    )
    assert monitor.monitoring_interval == 7
    stopped = client.post(DEPLOYMENT, json={"action": "stop_monitoring"})
    assert (stopped.status_code, monitor.monitoring_interval) == (200, None)


USAGE = 'send {"action": "force_check"} or {"action": "start_monitoring", "intervalMinutes": 1-1440}'


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b'"force_check"', 400, f"the body must be a JSON object, got str; {USAGE}"),
        (b'{"action": "reboot"}', 400, f"unknown action 'reboot'; {USAGE}"),
        (b'{"intervalMinutes": 5}', 400, f"unknown action None; {USAGE}"),
        (
            b'{"action": "start_monitoring", "intervalMinutes": 0}',
            422,
            "intervalMinutes=0 is out of range: use 1 to 1440",
        ),
        (
            b'{"action": "start_monitoring", "intervalMinutes": 1441}',
            422,
            "intervalMinutes=1441 is out of range: use 1 to 1440",
        ),
        (
            b'{"action": "start_monitoring", "intervalMinutes": "5"}',
            422,
            'intervalMinutes must be an integer from 1 to 1440, got "5"',
        ),
        (
            b'{"action": "start_monitoring", "intervalMinutes": 2.5}',
            422,
            "intervalMinutes must be an integer from 1 to 1440, got 2.5",
        ),
        (
            b'{"action": "start_monitoring", "intervalMinutes": true}',
            422,
            "intervalMinutes must be an integer from 1 to 1440, got true",
        ),
        (
            b'{"action": "start_monitoring"}',
            422,
            "intervalMinutes must be an integer from 1 to 1440, got null",
        ),
    ],
)
def test_bad_input_is_rejected_and_the_schedule_is_unchanged(
    body: bytes, status: int, error: str | None
) -> None:
    monitor = HealthMonitor(interval_unit=3600)
    client = client_for(monitor)
    assert (
        client.post(DEPLOYMENT, json={"action": "start_monitoring", "intervalMinutes": 30}).status_code == 202
    )
    response = client.post(DEPLOYMENT, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    if error is None:
        assert response.json()["error"].startswith("the body is not valid JSON (")
        assert response.json()["error"].endswith(USAGE)
    else:
        assert response.json() == {"error": error}
    assert monitor.monitoring_interval == 30
    monitor.stop_monitoring()


def test_monitoring_endpoints_show_breakers_results_and_notifications() -> None:
    breaker = CircuitBreaker("fastapi-breaker", failure_threshold=1)
    breaker.record(breaker.admit(), RuntimeError("down"))
    monitor = HealthMonitor()
    monitor.add("database", lambda: "pass")
    client = client_for(monitor)
    assert client.get("/monitoring/summary").json()["health"] is None
    breakers = client.get("/monitoring/circuit-breakers").json()["circuitBreakers"]
    assert breakers["fastapi-breaker"]["state"] == "open"
    assert breakers["fastapi-breaker"]["failureThreshold"] == 1
    client.get(DEPLOYMENT)
    summary = client.get("/monitoring/summary").json()
    assert summary["health"]["summary"]["overallStatus"] == "healthy"
    assert summary["health"]["services"]["database"]["status"] == "pass"
    assert summary["circuitBreakers"]["fastapi-breaker"] == "open"
    assert summary["monitoring"] == {"active": False, "intervalMinutes": None}
    assert summary["notifications"]["windowSeconds"] == 3600


def test_a_broken_monitor_answers_503_and_the_app_keeps_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    app = existing_app()
    monitor = HealthMonitor()

    async def broken() -> None:
        raise RuntimeError("registry corrupted")

    monkeypatch.setattr(monitor, "run_async", broken)
    client = client_for(monitor, app=app)
    response = client.get(DEPLOYMENT)
    assert (response.status_code, response.json()) == (
        503,
        {
            "error": "the health checks could not run: RuntimeError: registry corrupted",
            "summary": {"overallStatus": "unhealthy"},
        },
    )
    assert client.post("/orders/A-2").json() == {"orderId": "A-2"}


def test_router_can_be_included_by_hand() -> None:
    app = FastAPI()
    app.include_router(health_router(HealthMonitor(), prefix="/internal"))
    assert TestClient(app).get("/internal/health").json()["status"] == "ok"
