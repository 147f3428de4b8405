"""Health endpoints registered on a Flask app that already has its own /health-like routes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from otel_correlate import instrument_flask_app
from otel_correlate._health import CheckOutcome, HealthMonitor
from otel_correlate._health_flask import health_blueprint, mount_health_flask
from otel_correlate._resilience import CircuitBreaker

DEPLOYMENT = "/health/deployment"
USAGE = 'send {"action": "force_check"} or {"action": "start_monitoring", "intervalMinutes": 1-1440}'


def existing_app() -> Flask:
    """An app as the seed teams have it: its own /health and its own monitoring route."""
    app = Flask("existing")

    @app.get("/health")
    def own_health() -> dict[str, str]:
        return {"status": "mine", "framework": "flask"}

    @app.get("/monitoring/circuit-breakers")
    def own_breakers() -> dict[str, str]:
        return {"breakers": "mine"}

    @app.post("/orders/<order_id>")
    def create_order(order_id: str) -> dict[str, str]:
        return {"orderId": order_id}

    return app


def client_for(monitor: HealthMonitor, app: Flask | None = None) -> Any:
    app = app or Flask("health")
    mount_health_flask(app, monitor, prefix="")
    return app.test_client()


def test_mounting_never_overrides_existing_routes() -> None:
    app = existing_app()
    monitor = HealthMonitor()
    assert mount_health_flask(app, monitor, prefix="") == [
        "GET /health/deployment",
        "POST /health/deployment",
        "GET /monitoring/summary",
    ]
    client = app.test_client()
    assert client.get("/health").get_json() == {"status": "mine", "framework": "flask"}
    assert client.get("/monitoring/circuit-breakers").get_json() == {"breakers": "mine"}
    assert client.post("/orders/B-1").get_json() == {"orderId": "B-1"}
    assert client.get(DEPLOYMENT).status_code == 200
    assert mount_health_flask(app, monitor, prefix="") == []  # mounting twice adds nothing


def test_variable_and_trailing_slash_rules_count_as_existing() -> None:
    app = Flask("variable")

    @app.get("/health/<component>")
    def component_health(component: str) -> dict[str, str]:
        return {"component": component}

    @app.get("/monitoring/summary/")
    def own_summary() -> dict[str, str]:
        return {"summary": "mine"}

    mounted = mount_health_flask(app, HealthMonitor(), prefix="")
    assert mounted == ["GET /health", "POST /health/deployment", "GET /monitoring/circuit-breakers"]
    client = app.test_client()
    assert client.get(DEPLOYMENT).get_json() == {"component": "deployment"}
    assert client.get("/monitoring/summary").status_code == 308  # still the app's own redirect


def test_liveness_answers_fast_without_running_checks() -> None:
    monitor = HealthMonitor()
    monitor.add("slow", lambda: time.sleep(5) or "pass")
    started = time.monotonic()
    response = client_for(monitor).get("/health")
    assert time.monotonic() - started < 2.5  # running the check would take its 5 s
    assert response.get_json() == {"status": "ok", "timestamp": response.get_json()["timestamp"]}
    assert monitor.last_report is None


def test_switched_off_by_flag_and_prefixed_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_HEALTH_ENABLED", "0")
    app = Flask("flagged")
    assert mount_health_flask(app, HealthMonitor()) == []
    assert app.test_client().get(DEPLOYMENT).status_code == 404
    monkeypatch.setenv("OTEL_CORRELATE_HEALTH_ENABLED", "1")
    with pytest.raises(
        RuntimeError, match=r"called after the app handled its first request.*where the app is created"
    ):
        mount_health_flask(app, HealthMonitor())
    monkeypatch.setenv("OTEL_CORRELATE_HEALTH_PREFIX", "ops")
    app = Flask("prefixed")
    assert mount_health_flask(app, HealthMonitor())[0] == "GET /ops/health"
    client = app.test_client()
    assert client.get("/ops/health/deployment").status_code == 200
    assert client.get("/health").status_code == 404


@pytest.mark.parametrize(
    ("checks", "status", "overall"),
    [
        ([("db", lambda: CheckOutcome.passed(provider="sqlite"), True)], 200, "healthy"),
        ([("cache", lambda: "warn", True)], 206, "degraded"),
        ([("search", lambda: "fail", False)], 206, "degraded"),
        ([("db", lambda: "fail", True), ("cache", lambda: "warn", False)], 503, "unhealthy"),
        ([("db", lambda: time.sleep(3) or "pass", True)], 503, "unhealthy"),
    ],
    ids=[
        "healthy",
        "warn-degraded",
        "noncritical-fail-degraded",
        "critical-fail-unhealthy",
        "timeout-unhealthy",
    ],
)
def test_status_codes_follow_the_checks(
    checks: list[tuple[str, Any, bool]], status: int, overall: str
) -> None:
    monitor = HealthMonitor(timeout=1.5)  # far from the quick checks, short of the 3 s one
    for name, func, critical in checks:
        monitor.add(name, func, critical=critical)
    response = client_for(monitor).get(DEPLOYMENT, headers={"X-Request-ID": "req-flask"})
    body = response.get_json()
    assert response.status_code == status
    assert (body["requestId"], body["summary"]["overallStatus"], body["deployment"]["status"]) == (
        "req-flask",
        overall,
        overall,
    )
    assert set(body["services"]) == {name for name, _, _ in checks}
    assert set(body) == {"timestamp", "requestId", "deployment", "services", "summary"}


def test_request_id_comes_from_the_request_context() -> None:
    app = instrument_flask_app(Flask("with-context"))
    client = client_for(HealthMonitor(), app)
    response = client.get(DEPLOYMENT)
    assert response.get_json()["requestId"] == response.headers["X-Request-ID"]


def test_force_check_reruns_and_start_monitoring_schedules() -> None:
    runs: list[int] = []
    monitor = HealthMonitor(interval_unit=3600)
    monitor.add("counted", lambda: runs.append(1) or "pass")
    client = client_for(monitor)
    forced = client.post(DEPLOYMENT, json={"action": "force_check"})
    assert (forced.status_code, forced.get_json()["summary"]["totalChecks"], len(runs)) == (200, 1, 1)
    started = client.post(DEPLOYMENT, json={"action": "start_monitoring", "intervalMinutes": 1440})
    assert (started.status_code, started.get_json()["monitoring"]) == (
        202,
        {"active": True, "intervalMinutes": 1440},
    )
    assert monitor.monitoring_interval == 1440
    monitor.stop_monitoring()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b"[]", 400, f"the body must be a JSON object, got list; {USAGE}"),
        (b'{"action": "FORCE_CHECK"}', 400, f"unknown action 'FORCE_CHECK'; {USAGE}"),
        (
            b'{"action": "start_monitoring", "intervalMinutes": -5}',
            422,
            "intervalMinutes=-5 is out of range: use 1 to 1440",
        ),
        (
            b'{"action": "start_monitoring", "intervalMinutes": 100000}',
            422,
            "intervalMinutes=100000 is out of range: use 1 to 1440",
        ),
        (
            b'{"action": "start_monitoring", "intervalMinutes": [5]}',
            422,
            "intervalMinutes must be an integer from 1 to 1440, got [5]",
        ),
        (
            b'{"action": "start_monitoring", "intervalMinutes": false}',
            422,
            "intervalMinutes must be an integer from 1 to 1440, got false",
        ),
    ],
)
def test_bad_input_is_rejected_and_the_schedule_is_unchanged(
    body: bytes, status: int, error: str | None
) -> None:
    monitor = HealthMonitor(interval_unit=3600)
    client = client_for(monitor)
    assert (
        client.post(DEPLOYMENT, json={"action": "start_monitoring", "intervalMinutes": 15}).status_code == 202
    )
    response = client.post(DEPLOYMENT, data=body, content_type="application/json")
    assert response.status_code == status
    if error is None:
        assert response.get_json()["error"].startswith("the body is not valid JSON (")
    else:
        assert response.get_json() == {"error": error}
    assert monitor.monitoring_interval == 15
    monitor.stop_monitoring()


def test_monitoring_endpoints_show_breakers_and_results() -> None:
    breaker = CircuitBreaker("flask-breaker", failure_threshold=3)
    monitor = HealthMonitor()
    monitor.add("queue", lambda: "warn", critical=False)
    client = client_for(monitor)
    assert client.get("/monitoring/circuit-breakers").get_json()["circuitBreakers"]["flask-breaker"] == (
        breaker.snapshot().to_json()
    )
    client.post(DEPLOYMENT, json={"action": "force_check"})
    summary = client.get("/monitoring/summary").get_json()
    assert summary["health"]["summary"]["warningChecks"] == 1
    assert summary["circuitBreakers"]["flask-breaker"] == "closed"
    assert set(summary) == {"timestamp", "health", "monitoring", "circuitBreakers", "notifications"}


def test_a_broken_monitor_answers_503_and_the_app_keeps_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    app = existing_app()
    monitor = HealthMonitor()

    def broken() -> None:
        raise RuntimeError("registry corrupted")

    monkeypatch.setattr(monitor, "run", broken)
    client = client_for(monitor, app)
    response = client.get(DEPLOYMENT)
    assert (response.status_code, response.get_json()["error"]) == (
        503,
        "the health checks could not run: RuntimeError: registry corrupted",
    )
    assert client.post("/orders/B-2").get_json() == {"orderId": "B-2"}


def test_blueprint_can_be_registered_by_hand() -> None:
    app = Flask("by-hand")
    app.register_blueprint(health_blueprint(HealthMonitor(), prefix="/internal"))
    assert app.test_client().get("/internal/health").get_json()["status"] == "ok"
