"""Health and monitoring endpoints for FastAPI, as an ``APIRouter`` mounted additively.

:func:`mount_health_fastapi` adds ``GET /health``, ``GET|POST /health/deployment``,
``GET /monitoring/circuit-breakers`` and ``GET /monitoring/summary`` (under
``OTEL_CORRELATE_HEALTH_PREFIX``) to an app, skipping every one the app already
answers: an existing ``/health`` keeps working exactly as before. Call it after
your own routes are defined. ``OTEL_CORRELATE_HEALTH_ENABLED=false`` mounts nothing.

Example:
    >>> from fastapi import FastAPI
    >>> app = FastAPI()
    >>> @app.get("/health")
    ... def own_health() -> dict[str, str]:
    ...     return {"mine": "yes"}
    >>> mount_health_fastapi(app)
    ['GET /health/deployment', 'POST /health/deployment', 'GET /monitoring/circuit-breakers', 'GET /monitoring/summary']
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints'
# annotations at runtime, and ``Request`` is imported lazily.

from collections.abc import Callable, Collection
from typing import Any

from loguru import logger

from otel_correlate import _health_endpoints as endpoints
from otel_correlate import _settings
from otel_correlate._health import HealthMonitor, health_monitor
from otel_correlate._optional import require_extra


def _require_fastapi() -> Any:
    return require_extra("fastapi", extra="fastapi", feature="otel-correlate's FastAPI health endpoints")


def health_router(
    monitor: HealthMonitor | None = None,
    *,
    prefix: str | None = None,
    exclude: Collection[tuple[str, str]] = (),
) -> Any:
    """An ``APIRouter`` with the health and monitoring endpoints.

    Example:
        >>> from fastapi import FastAPI
        >>> app = FastAPI()
        >>> app.include_router(health_router(prefix="/ops"))

    Args:
        monitor: Whose checks run; :func:`~otel_correlate._health.health_monitor` by default.
        prefix: Path prefix; ``OTEL_CORRELATE_HEALTH_PREFIX`` by default.
        exclude: ``(method, path)`` pairs (prefix included) to leave out.

    Raises:
        ImportError: FastAPI is not installed; install ``otel-correlate[fastapi]``.
    """
    _require_fastapi()
    from fastapi import APIRouter, Request
    from fastapi.responses import JSONResponse

    the_monitor = monitor or health_monitor()
    base = endpoints.resolve_prefix(prefix)

    async def liveness() -> JSONResponse:
        return JSONResponse(endpoints.liveness_body())

    async def deployment(request: Request) -> JSONResponse:
        try:
            report = await the_monitor.run_async()
        except Exception as exc:  # monitoring must never fail the app: answer, do not raise
            return JSONResponse(endpoints.failure_body(exc), status_code=503)
        status, body = endpoints.deployment_body(the_monitor, report, request.headers.get("x-request-id"))
        return JSONResponse(body, status_code=status)

    async def deployment_action(request: Request) -> JSONResponse:
        parsed = endpoints.parse_action(await request.body())
        if isinstance(parsed, tuple):
            return JSONResponse(parsed[1], status_code=parsed[0])
        answered = endpoints.apply_action(the_monitor, parsed)
        if answered is not None:
            return JSONResponse(answered[1], status_code=answered[0])
        return await deployment(request)

    async def breakers() -> JSONResponse:
        return JSONResponse(endpoints.breakers_body())

    async def summary() -> JSONResponse:
        return JSONResponse(endpoints.summary_body(the_monitor))

    handlers: dict[tuple[str, str], Callable[..., Any]] = {
        ("GET", "/health"): liveness,
        ("GET", "/health/deployment"): deployment,
        ("POST", "/health/deployment"): deployment_action,
        ("GET", "/monitoring/circuit-breakers"): breakers,
        ("GET", "/monitoring/summary"): summary,
    }
    router = APIRouter(tags=["health"])
    for method, path in endpoints.ROUTES:
        full = base + path
        if (method, full) in exclude:
            continue
        name = f"otel_correlate_{method.lower()}_{path.strip('/').replace('/', '_').replace('-', '_')}"
        router.add_api_route(full, handlers[(method, path)], methods=[method], name=name)
    return router


def _answered(app: Any, method: str, path: str) -> bool:
    """Whether one of the app's routes already fully matches ``method path``."""
    from starlette.routing import Match

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }
    for route in app.router.routes:
        try:
            match, _ = route.matches(scope)
        except Exception:  # an exotic route we cannot probe: assume it may answer
            return True
        if match is Match.FULL:
            return True
    return False


def mount_health_fastapi(
    app: Any,
    monitor: HealthMonitor | None = None,
    *,
    prefix: str | None = None,
    enabled: bool | None = None,
) -> list[str]:
    """Add the health endpoints the app does not answer yet; returns what was mounted.

    Example:
        >>> from fastapi import FastAPI
        >>> mount_health_fastapi(FastAPI(), prefix="/ops")[0]
        'GET /ops/health'

    Args:
        app: The FastAPI app.
        monitor: Whose checks run; :func:`~otel_correlate._health.health_monitor` by default.
        prefix: Path prefix; ``OTEL_CORRELATE_HEALTH_PREFIX`` by default.
        enabled: Mount at all; ``OTEL_CORRELATE_HEALTH_ENABLED`` (true) by default.

    Returns:
        ``"METHOD /path"`` of every endpoint mounted; an empty list when disabled.
    """
    if not (_settings.HEALTH_ENABLED.get() if enabled is None else enabled):
        return []
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
        app.include_router(health_router(monitor, prefix=base, exclude=taken))
    return mounted
