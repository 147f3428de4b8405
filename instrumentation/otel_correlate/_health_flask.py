"""Health and monitoring endpoints for Flask, as a ``Blueprint`` registered additively.

:func:`mount_health_flask` registers ``GET /health``, ``GET|POST /health/deployment``,
``GET /monitoring/circuit-breakers`` and ``GET /monitoring/summary`` (under
``OTEL_CORRELATE_HEALTH_PREFIX``), skipping every one the app already answers:
an existing ``/health`` keeps working exactly as before. Call it after your own
routes are defined and before the first request. ``OTEL_CORRELATE_HEALTH_ENABLED=false``
mounts nothing.

Example:
    >>> from flask import Flask
    >>> app = Flask("orders")
    >>> @app.get("/health")
    ... def own_health() -> dict[str, str]:
    ...     return {"mine": "yes"}
    >>> mount_health_flask(app)
    ['GET /health/deployment', 'POST /health/deployment', 'GET /monitoring/circuit-breakers', 'GET /monitoring/summary']
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from loguru import logger

from otel_correlate import _health_endpoints as endpoints
from otel_correlate import _settings
from otel_correlate._health import HealthMonitor, health_monitor
from otel_correlate._optional import require_extra

BLUEPRINT_NAME = "otel_correlate_health"


def _require_flask() -> Any:
    return require_extra("flask", extra="flask", feature="otel-correlate's Flask health endpoints")


def health_blueprint(
    monitor: HealthMonitor | None = None,
    *,
    prefix: str | None = None,
    exclude: Collection[tuple[str, str]] = (),
) -> Any:
    """A ``Blueprint`` with the health and monitoring endpoints.

    Example:
        >>> from flask import Flask
        >>> app = Flask("orders")
        >>> app.register_blueprint(health_blueprint(prefix="/ops"))

    Args:
        monitor: Whose checks run; :func:`~otel_correlate._health.health_monitor` by default.
        prefix: Path prefix; ``OTEL_CORRELATE_HEALTH_PREFIX`` by default.
        exclude: ``(method, path)`` pairs (prefix included) to leave out.

    Raises:
        ImportError: Flask is not installed; install ``otel-correlate[flask]``.
    """
    flask = _require_flask()
    the_monitor = monitor or health_monitor()
    base = endpoints.resolve_prefix(prefix)

    def reply(body: Any, status: int = 200) -> Any:
        response = flask.jsonify(body)
        response.status_code = status
        return response

    def liveness() -> Any:
        return reply(endpoints.liveness_body())

    def deployment() -> Any:
        try:
            report = the_monitor.run()
        except Exception as exc:  # monitoring must never fail the app: answer, do not raise
            return reply(endpoints.failure_body(exc), 503)
        status, body = endpoints.deployment_body(
            the_monitor, report, flask.request.headers.get("X-Request-ID")
        )
        return reply(body, status)

    def deployment_action() -> Any:
        parsed = endpoints.parse_action(flask.request.get_data(cache=False))
        if isinstance(parsed, tuple):
            return reply(parsed[1], parsed[0])
        answered = endpoints.apply_action(the_monitor, parsed)
        if answered is not None:
            return reply(answered[1], answered[0])
        return deployment()

    def breakers() -> Any:
        return reply(endpoints.breakers_body())

    def summary() -> Any:
        return reply(endpoints.summary_body(the_monitor))

    handlers: dict[tuple[str, str], Callable[[], Any]] = {
        ("GET", "/health"): liveness,
        ("GET", "/health/deployment"): deployment,
        ("POST", "/health/deployment"): deployment_action,
        ("GET", "/monitoring/circuit-breakers"): breakers,
        ("GET", "/monitoring/summary"): summary,
    }
    blueprint = flask.Blueprint(BLUEPRINT_NAME, __name__)
    for method, path in endpoints.ROUTES:
        full = base + path
        if (method, full) in exclude:
            continue
        endpoint = f"{method.lower()}_{path.strip('/').replace('/', '_').replace('-', '_')}"
        blueprint.add_url_rule(full, endpoint=endpoint, view_func=handlers[(method, path)], methods=[method])
    return blueprint


def _answered(app: Any, method: str, path: str) -> bool:
    """Whether one of the app's rules already answers (or redirects) ``method path``."""
    from werkzeug.exceptions import MethodNotAllowed, NotFound
    from werkzeug.routing import RequestRedirect

    adapter = app.url_map.bind("localhost")
    try:
        adapter.match(path, method=method)
    except RequestRedirect:  # e.g. the app has "/health/": leave "/health" to its redirect
        return True
    except (NotFound, MethodNotAllowed):
        return False
    return True


def mount_health_flask(
    app: Any,
    monitor: HealthMonitor | None = None,
    *,
    prefix: str | None = None,
    enabled: bool | None = None,
) -> list[str]:
    """Register the health endpoints the app does not answer yet; returns what was mounted.

    Example:
        >>> from flask import Flask
        >>> mount_health_flask(Flask("orders"), prefix="/ops")[0]
        'GET /ops/health'

    Args:
        app: The Flask app.
        monitor: Whose checks run; :func:`~otel_correlate._health.health_monitor` by default.
        prefix: Path prefix; ``OTEL_CORRELATE_HEALTH_PREFIX`` by default.
        enabled: Mount at all; ``OTEL_CORRELATE_HEALTH_ENABLED`` (true) by default.

    Returns:
        ``"METHOD /path"`` of every endpoint mounted; an empty list when disabled or mounted before.

    Raises:
        RuntimeError: The app already handled a request; Flask accepts no routes after that.
    """
    if not (_settings.HEALTH_ENABLED.get() if enabled is None else enabled):
        return []
    if BLUEPRINT_NAME in app.blueprints:
        return []
    if getattr(app, "_got_first_request", False):
        raise RuntimeError(
            f"mount_health_flask({app.name!r}) was called after the app handled its first request, "
            "when Flask no longer accepts routes; call it where the app is created."
        )
    base = endpoints.resolve_prefix(prefix)
    taken = {
        (method, base + path) for method, path in endpoints.ROUTES if _answered(app, method, base + path)
    }
    mounted = [
        f"{method} {base + path}" for method, path in endpoints.ROUTES if (method, base + path) not in taken
    ]
    if taken:
        logger.bind(component="health").info(
            "health endpoints: kept the app's own {}", ", ".join(f"{m} {p}" for m, p in sorted(taken))
        )
    if mounted:
        app.register_blueprint(health_blueprint(monitor, prefix=base, exclude=taken))
    return mounted
