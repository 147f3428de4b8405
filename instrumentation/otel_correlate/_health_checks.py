"""Ready-made health checks: an HTTP dependency, a SQL database, the OpenTelemetry collector.

Each factory returns a check function for :meth:`HealthMonitor.add
<otel_correlate._health.HealthMonitor.add>`; the monitor bounds it with its timeout.

Example:
    >>> from otel_correlate._health import HealthMonitor
    >>> monitor = HealthMonitor()
    >>> monitor.add("collector", collector_check("http://127.0.0.1:4317"), critical=False)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from otel_correlate._health import CheckOutcome


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def http_check(
    url: str, *, warn_after_ms: float | None = None, headers: Mapping[str, str] | None = None
) -> Callable[[], Awaitable[CheckOutcome]]:
    """A check that GETs ``url``: pass on 2xx/3xx, warn when slower than ``warn_after_ms``, else fail.

    Example:
        >>> from otel_correlate._health import HealthMonitor
        >>> monitor = HealthMonitor()
        >>> monitor.add("payments", http_check("https://status.example.com/health"), critical=False)
    """
    import httpx

    shown = _safe_url(url)

    async def check() -> CheckOutcome:
        started = time.perf_counter()
        async with httpx.AsyncClient() as client:
            response = await client.get(url, headers=dict(headers or {}))
        elapsed_ms = (time.perf_counter() - started) * 1000
        details = {"url": shown, "statusCode": response.status_code}
        if response.status_code >= 400:
            return CheckOutcome.failed(**details, error=f"HTTP {response.status_code}")
        if warn_after_ms is not None and elapsed_ms > warn_after_ms:
            return CheckOutcome.warning(**details, slow=f"{elapsed_ms:.0f} ms > {warn_after_ms:g} ms")
        return CheckOutcome.passed(**details)

    return check


def sql_check(url: str, *, query: str = "SELECT 1") -> Callable[[], CheckOutcome]:
    """A check that connects to a SQLAlchemy URL and runs ``query``.

    Example:
        >>> from otel_correlate._health import HealthMonitor
        >>> monitor = HealthMonitor()
        >>> monitor.add("database", sql_check("sqlite:///:memory:"))

    Raises:
        ImportError: SQLAlchemy is not installed; install ``otel-correlate[sql]``.
    """
    try:
        import sqlalchemy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the SQL health check needs SQLAlchemy: pip install 'otel-correlate[sql]'") from exc
    engine = sqlalchemy.create_engine(url, pool_pre_ping=True)
    statement = sqlalchemy.text(query)

    def check() -> CheckOutcome:
        with engine.connect() as connection:
            connection.execute(statement)
        return CheckOutcome.passed(
            dialect=engine.dialect.name, database=engine.url.database or "", connection="verified"
        )

    return check


def collector_check(endpoint: str | None = None) -> Callable[[], Awaitable[CheckOutcome]]:
    """A check that the OpenTelemetry collector's OTLP port accepts TCP connections.

    The endpoint falls back to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (default
    ``http://localhost:4317``, or ``:4318`` for ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``).
    Register it with ``critical=False``: without a collector the service still
    works, it only loses telemetry.

    Example:
        >>> from otel_correlate._health import HealthMonitor
        >>> monitor = HealthMonitor()
        >>> monitor.add("collector", collector_check(), critical=False)
    """
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").strip() or "grpc"
    default_port = 4317 if protocol == "grpc" else 4318
    target = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    target = target or f"http://localhost:{default_port}"
    parts = urlsplit(target if "://" in target else f"http://{target}")
    host, port = parts.hostname or "localhost", parts.port or default_port

    async def check() -> CheckOutcome:
        details = {"endpoint": f"{host}:{port}", "protocol": protocol}
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            return CheckOutcome.failed(**details, error=f"cannot connect: {exc.strerror or exc}")
        writer.close()
        return CheckOutcome.passed(**details)

    return check
