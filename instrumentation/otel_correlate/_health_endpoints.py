"""What the health endpoints answer, the same for FastAPI and Flask.

The framework modules (:mod:`otel_correlate._health_fastapi`,
:mod:`otel_correlate._health_flask`) only translate requests and responses; the
bodies, the validation of ``POST /health/deployment`` and the route table live
here so both frameworks behave identically.

Example:
    >>> parse_action(b'{"action": "force_check"}')
    Action(name='force_check', interval_minutes=None)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from loguru import logger

from otel_correlate import _settings
from otel_correlate._context import current_request_id, new_request_id
from otel_correlate._dead_letters import utc_now_iso
from otel_correlate._health import HealthMonitor, HealthReport
from otel_correlate._notify import notification_summary
from otel_correlate._resilience import circuit_breakers


def failure_body(exc: Exception) -> dict[str, Any]:
    """The 503 body when the checks could not run at all (a bug, not a failing check); logs it."""
    logger.bind(component="health").exception("health checks could not run")
    return {
        "error": f"the health checks could not run: {type(exc).__name__}: {exc}",
        "summary": {"overallStatus": "unhealthy"},
    }


def request_id_for(header_value: str | None) -> str:
    """The requestId to report: the request's (our middleware's), else the header, else a new one."""
    return current_request_id() or header_value or new_request_id()


@dataclass(frozen=True)
class Action:
    """A validated ``POST /health/deployment`` body."""

    name: str
    interval_minutes: int | None = None


ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/health"),
    ("GET", "/health/deployment"),
    ("POST", "/health/deployment"),
    ("GET", "/monitoring/circuit-breakers"),
    ("GET", "/monitoring/summary"),
)
"""Every ``(method, path)`` the health integrations serve, before the prefix."""


def resolve_prefix(prefix: str | None) -> str:
    """The path prefix: ``prefix`` or ``OTEL_CORRELATE_HEALTH_PREFIX``, as ``/api`` or ``""``.

    Example:
        >>> resolve_prefix("api/"), resolve_prefix("/")
        ('/api', '')
    """
    raw = _settings.HEALTH_PREFIX.get() if prefix is None else prefix
    raw = raw.strip("/")
    return f"/{raw}" if raw else ""


def liveness_body() -> dict[str, Any]:
    """The body of ``GET /health``: answers at once, runs no check."""
    return {"status": "ok", "timestamp": utc_now_iso()}


_USAGE = 'send {"action": "force_check"} or {"action": "start_monitoring", "intervalMinutes": 1-1440}'


def parse_action(raw: bytes) -> Action | tuple[int, dict[str, Any]]:
    """Validate a POST body: an :class:`Action`, or the ``(status, error body)`` to answer.

    Example:
        >>> parse_action(b'{"action": "force_check"}')
        Action(name='force_check', interval_minutes=None)
        >>> parse_action(b'{"action": "start_monitoring", "intervalMinutes": 0}')[0]
        422
    """
    try:
        data = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        return 400, {"error": f"the body is not valid JSON ({exc}); {_USAGE}"}
    if not isinstance(data, dict):
        return 400, {"error": f"the body must be a JSON object, got {type(data).__name__}; {_USAGE}"}
    action = data.get("action")
    if action in ("force_check", "stop_monitoring"):
        return Action(action)
    if action != "start_monitoring":
        return 400, {"error": f"unknown action {action!r}; {_USAGE}"}
    minutes = data.get("intervalMinutes")
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        return 422, {"error": f"intervalMinutes must be an integer from 1 to 1440, got {json.dumps(minutes)}"}
    if not 1 <= minutes <= 1440:
        return 422, {"error": f"intervalMinutes={minutes} is out of range: use 1 to 1440"}
    return Action(action, minutes)


def apply_action(monitor: HealthMonitor, action: Action) -> tuple[int, dict[str, Any]] | None:
    """Start or stop monitoring; ``None`` for ``force_check``, which the caller runs (sync or async)."""
    if action.name == "start_monitoring" and action.interval_minutes is not None:
        monitor.start_monitoring(action.interval_minutes)
        return 202, {
            "action": action.name,
            "monitoring": {"active": True, "intervalMinutes": action.interval_minutes},
        }
    if action.name == "stop_monitoring":
        monitor.stop_monitoring()
        return 200, {"action": action.name, "monitoring": {"active": False, "intervalMinutes": None}}
    return None


def deployment_body(
    monitor: HealthMonitor, report: HealthReport, request_id: str | None
) -> tuple[int, dict[str, Any]]:
    """Status code and body of ``/health/deployment`` for ``report``."""
    body = report.to_json(deployment=monitor.deployment, request_id=request_id_for(request_id))
    return report.overall.http_status, body


def breakers_body() -> dict[str, Any]:
    """The body of ``/monitoring/circuit-breakers``."""
    return {
        "timestamp": utc_now_iso(),
        "circuitBreakers": {b.name: b.snapshot().to_json() for b in circuit_breakers()},
    }


def summary_body(monitor: HealthMonitor) -> dict[str, Any]:
    """The body of ``/monitoring/summary``: last results, breaker states, notification success."""
    report = monitor.last_report
    return {
        "timestamp": utc_now_iso(),
        "health": None
        if report is None
        else {
            "timestamp": report.timestamp,
            "summary": report.summary(),
            "services": {r.name: r.to_json() for r in report.results},
        },
        "monitoring": {
            "active": monitor.monitoring_interval is not None,
            "intervalMinutes": monitor.monitoring_interval,
        },
        "circuitBreakers": {b.name: b.state.value for b in circuit_breakers()},
        "notifications": notification_summary(),
    }
