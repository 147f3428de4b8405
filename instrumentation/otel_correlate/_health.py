"""Deployment health: a registry of checks, a concurrent runner with timeouts, cached results.

:class:`HealthMonitor` runs its checks concurrently, each bounded by a timeout
(``OTEL_CORRELATE_HEALTH_CHECK_TIMEOUT``, 5 s), and caches the last
:class:`HealthReport`; :meth:`HealthMonitor.start_monitoring` reruns them in the
background every N minutes. A check is a callable, sync or async, returning a
:class:`CheckOutcome` (or ``"pass"``/``"warn"``/``"fail"``, or a bool); raising or
timing out is a fail. The report is ``healthy`` (200), ``degraded`` (206: a warn or
a non-critical fail) or ``unhealthy`` (503: a critical fail).

Telemetry: each run is a ``health.deployment`` span with one ``health.check <name>``
child per check; ``health.check.status`` is a gauge per check (1 pass, 0.5 warn,
0 fail; attributes ``check`` and ``critical``), ``health.check.duration`` a
histogram in seconds (``check``, ``status``) and ``health.status`` the overall
gauge (1 healthy, 0.5 degraded, 0 unhealthy).

Example:
    >>> monitor = HealthMonitor()
    >>> @monitor.check("cache", critical=False)
    ... def cache() -> CheckOutcome:
    ...     return CheckOutcome.warning(hitRate=0.2)
    >>> monitor.run().overall.value
    'degraded'
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from loguru import logger
from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from otel_correlate import _settings
from otel_correlate._dead_letters import utc_now_iso

_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="otel-correlate-health")


class CheckStatus(StrEnum):
    """What one check found."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class OverallStatus(StrEnum):
    """What all checks together mean, and the HTTP status ``/health/deployment`` answers with."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def http_status(self) -> int:
        """200 healthy, 206 degraded, 503 unhealthy."""
        return {"healthy": 200, "degraded": 206, "unhealthy": 503}[self.value]


_STATUS_VALUE = {CheckStatus.PASS: 1.0, CheckStatus.WARN: 0.5, CheckStatus.FAIL: 0.0}
_OVERALL_VALUE = {OverallStatus.HEALTHY: 1.0, OverallStatus.DEGRADED: 0.5, OverallStatus.UNHEALTHY: 0.0}


@dataclass(frozen=True)
class CheckOutcome:
    """What a check returns: a status and details shown under ``services.<name>.details``.

    Example:
        >>> CheckOutcome.passed(provider="postgresql").details
        {'provider': 'postgresql'}
    """

    status: CheckStatus
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def passed(cls, **details: Any) -> CheckOutcome:
        """A pass with ``details``."""
        return cls(CheckStatus.PASS, details)

    @classmethod
    def warning(cls, **details: Any) -> CheckOutcome:
        """A warn with ``details``: degraded, not down."""
        return cls(CheckStatus.WARN, details)

    @classmethod
    def failed(cls, **details: Any) -> CheckOutcome:
        """A fail with ``details``."""
        return cls(CheckStatus.FAIL, details)


CheckFunc = Callable[[], Any]


@dataclass(frozen=True)
class HealthCheck:
    """One registered check: its function, whether a fail makes the service unhealthy, its timeout."""

    name: str
    func: CheckFunc
    critical: bool = True
    timeout: float | None = None


@dataclass(frozen=True)
class CheckResult:
    """One check's result in a report."""

    name: str
    status: CheckStatus
    response_time_ms: float
    details: Mapping[str, Any]
    last_checked: str
    critical: bool

    def to_json(self) -> dict[str, Any]:
        """``{name, status, responseTime, details, lastChecked}`` as ``services.<name>``."""
        return {
            "name": self.name,
            "status": self.status.value,
            "responseTime": round(self.response_time_ms, 1),
            "details": dict(self.details),
            "lastChecked": self.last_checked,
        }


@dataclass(frozen=True)
class DeploymentInfo:
    """Deployment fields of ``/health/deployment``.

    Attributes:
        version: ``OTEL_CORRELATE_DEPLOYMENT_VERSION``.
        deployment_id: ``OTEL_CORRELATE_DEPLOYMENT_ID``.
        region: ``OTEL_CORRELATE_REGION``.
        timestamp: When this process started serving (ISO 8601 UTC).
    """

    version: str = field(default_factory=_settings.DEPLOYMENT_VERSION.get)
    deployment_id: str = field(default_factory=_settings.DEPLOYMENT_ID.get)
    region: str = field(default_factory=_settings.DEPLOYMENT_REGION.get)
    timestamp: str = field(default_factory=utc_now_iso)


@dataclass(frozen=True)
class HealthReport:
    """The results of one run of every check."""

    timestamp: str
    results: tuple[CheckResult, ...]

    @property
    def overall(self) -> OverallStatus:
        """Unhealthy if a critical check failed, degraded on any warn or non-critical fail, else healthy."""
        if any(r.status is CheckStatus.FAIL and r.critical for r in self.results):
            return OverallStatus.UNHEALTHY
        if any(r.status is not CheckStatus.PASS for r in self.results):
            return OverallStatus.DEGRADED
        return OverallStatus.HEALTHY

    def summary(self) -> dict[str, Any]:
        """``{overallStatus, totalChecks, passedChecks, failedChecks, warningChecks}``."""
        count = {status: sum(1 for r in self.results if r.status is status) for status in CheckStatus}
        return {
            "overallStatus": self.overall.value,
            "totalChecks": len(self.results),
            "passedChecks": count[CheckStatus.PASS],
            "failedChecks": count[CheckStatus.FAIL],
            "warningChecks": count[CheckStatus.WARN],
        }

    def to_json(self, *, deployment: DeploymentInfo, request_id: str) -> dict[str, Any]:
        """The ``/health/deployment`` body."""
        return {
            "timestamp": self.timestamp,
            "requestId": request_id,
            "deployment": {
                "version": deployment.version,
                "deploymentId": deployment.deployment_id,
                "timestamp": deployment.timestamp,
                "region": deployment.region,
                "status": self.overall.value,
                "checks": [
                    {"name": r.name, "status": r.status.value, "critical": r.critical} for r in self.results
                ],
            },
            "services": {r.name: r.to_json() for r in self.results},
            "summary": self.summary(),
        }


def _normalise(value: Any) -> CheckOutcome:
    if isinstance(value, CheckOutcome):
        return value
    if isinstance(value, bool):
        return CheckOutcome(CheckStatus.PASS if value else CheckStatus.FAIL)
    if isinstance(value, str) and value in CheckStatus.__members__.values():
        return CheckOutcome(CheckStatus(value))
    return CheckOutcome.failed(
        error=f"the check returned {value!r}; return a CheckOutcome, 'pass', 'warn', 'fail' or a bool"
    )


class HealthMonitor:
    """Registered checks, their concurrent runner, the cached report and the background schedule.

    Example:
        >>> monitor = HealthMonitor(timeout=2.0)
        >>> monitor.add("database", lambda: CheckOutcome.passed(connection="verified"))
        >>> monitor.run().summary()["passedChecks"]
        1

    Args:
        timeout: Default seconds per check (``OTEL_CORRELATE_HEALTH_CHECK_TIMEOUT``, 5).
        deployment: Deployment fields; from the environment by default.
        interval_unit: Seconds in one ``intervalMinutes`` minute; tests shorten it.
        tracer_provider: Where run spans go; the global provider by default.
        meter_provider: Where check metrics go; the global provider by default.
    """

    def __init__(
        self,
        *,
        timeout: float | None = None,
        deployment: DeploymentInfo | None = None,
        interval_unit: float = 60.0,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.timeout = _settings.HEALTH_CHECK_TIMEOUT.get() if timeout is None else timeout
        if not self.timeout > 0:
            raise ValueError(f"timeout={self.timeout!r} is not valid: use seconds > 0.")
        self.deployment = deployment or DeploymentInfo()
        self.interval_unit = interval_unit
        self._checks: dict[str, HealthCheck] = {}
        self._lock = threading.Lock()
        self._last: HealthReport | None = None
        self._interval: int | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("otel_correlate")
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("otel_correlate")
        self._status_gauge = meter.create_gauge(
            "health.check.status",
            unit="{status}",
            description="Last result per health check: 1 pass, 0.5 warn, 0 fail.",
        )
        self._overall_gauge = meter.create_gauge(
            "health.status",
            unit="{status}",
            description="Overall deployment health: 1 healthy, 0.5 degraded, 0 unhealthy.",
        )
        self._duration = meter.create_histogram(
            "health.check.duration", unit="s", description="How long each health check took."
        )

    # --- registry -------------------------------------------------------------------
    def add(self, name: str, func: CheckFunc, *, critical: bool = True, timeout: float | None = None) -> None:
        """Register a check under ``name``.

        Raises:
            ValueError: ``name`` is taken or empty; remove the other check or pick another name.
        """
        if not name:
            raise ValueError("a health check needs a non-empty name")
        with self._lock:
            if name in self._checks:
                raise ValueError(f"a health check named {name!r} is registered already; pick another name")
            self._checks[name] = HealthCheck(name, func, critical, timeout)

    def check(
        self, name: str | None = None, *, critical: bool = True, timeout: float | None = None
    ) -> Callable[[CheckFunc], CheckFunc]:
        """Register the decorated function as a check (named after it unless ``name`` is given)."""

        def register(func: CheckFunc) -> CheckFunc:
            self.add(name or func.__name__, func, critical=critical, timeout=timeout)
            return func

        return register

    def remove(self, name: str) -> None:
        """Unregister a check; unknown names are ignored."""
        with self._lock:
            self._checks.pop(name, None)

    @property
    def checks(self) -> tuple[HealthCheck, ...]:
        """The registered checks, in registration order."""
        with self._lock:
            return tuple(self._checks.values())

    @property
    def last_report(self) -> HealthReport | None:
        """The cached report of the last run, ``None`` before the first."""
        return self._last

    # --- running --------------------------------------------------------------------
    async def run_async(self) -> HealthReport:
        """Run every check concurrently now, cache and export the report."""
        with self._tracer.start_as_current_span("health.deployment") as span:
            results = await asyncio.gather(*(self._run_one(check) for check in self.checks))
            report = HealthReport(utc_now_iso(), tuple(results))
            summary = report.summary()
            span.set_attributes(
                {
                    "health.status": report.overall.value,
                    "health.checks.total": summary["totalChecks"],
                    "health.checks.failed": summary["failedChecks"],
                    "health.checks.warning": summary["warningChecks"],
                }
            )
            if report.overall is OverallStatus.UNHEALTHY:
                span.set_status(Status(StatusCode.ERROR, "a critical health check failed"))
        self._overall_gauge.set(_OVERALL_VALUE[report.overall])
        self._last = report
        return report

    def run(self) -> HealthReport:
        """Run the checks from sync code (Flask, the background thread).

        Raises:
            RuntimeError: Called inside a running event loop; ``await run_async()`` there instead.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run_async())
        raise RuntimeError(
            "HealthMonitor.run() was called inside an event loop; use `await monitor.run_async()`"
        )

    async def _run_one(self, check: HealthCheck) -> CheckResult:
        timeout = check.timeout or self.timeout
        attributes: dict[str, str | bool] = {
            "health.check.name": check.name,
            "health.check.critical": check.critical,
        }
        with self._tracer.start_as_current_span(f"health.check {check.name}", attributes=attributes) as span:
            started = time.perf_counter()
            try:
                outcome = _normalise(await asyncio.wait_for(self._invoke(check.func), timeout))
            except TimeoutError:
                outcome = CheckOutcome.failed(error=f"timed out after {timeout:g} s")
            except Exception as exc:
                outcome = CheckOutcome.failed(error=f"{type(exc).__name__}: {exc}")
            elapsed = time.perf_counter() - started
            span.set_attribute("health.check.status", outcome.status.value)
            if outcome.status is CheckStatus.FAIL:
                span.set_status(Status(StatusCode.ERROR, str(outcome.details.get("error", "check failed"))))
        self._status_gauge.set(
            _STATUS_VALUE[outcome.status], {"check": check.name, "critical": check.critical}
        )
        self._duration.record(elapsed, {"check": check.name, "status": outcome.status.value})
        return CheckResult(
            check.name, outcome.status, elapsed * 1000, outcome.details, utc_now_iso(), check.critical
        )

    @staticmethod
    async def _invoke(func: CheckFunc) -> Any:
        if inspect.iscoroutinefunction(func):
            return await func()
        # Sync checks run on a shared pool (not the loop's default one, which asyncio.run
        # would wait for): a hung check times out here and never holds up the response.
        ctx = contextvars.copy_context()
        value = await asyncio.get_running_loop().run_in_executor(_EXECUTOR, ctx.run, func)
        if inspect.isawaitable(value):
            value = await value
        return value

    # --- background monitoring ---------------------------------------------------------
    @property
    def monitoring_interval(self) -> int | None:
        """Minutes between background runs, ``None`` when not monitoring."""
        return self._interval

    def start_monitoring(self, interval_minutes: int) -> None:
        """Run the checks now and then every ``interval_minutes`` (1 to 1440) in a background thread.

        Calling it again changes the interval. Failures are logged, never raised.

        Raises:
            ValueError: ``interval_minutes`` is not an integer from 1 to 1440; nothing changed.
        """
        if isinstance(interval_minutes, bool) or not isinstance(interval_minutes, int):
            raise ValueError(f"intervalMinutes={interval_minutes!r} must be an integer from 1 to 1440")
        if not 1 <= interval_minutes <= 1440:
            raise ValueError(f"intervalMinutes={interval_minutes} is out of range: use 1 to 1440")
        with self._lock:
            self._interval = interval_minutes
            self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._monitor, name="otel-correlate-health", daemon=True
                )
                self._thread.start()

    def stop_monitoring(self) -> None:
        """Stop the background runs (the cached report stays)."""
        with self._lock:
            self._interval = None
            self._wake.set()

    def _monitor(self) -> None:
        while True:
            with self._lock:
                interval = self._interval
                self._wake.clear()
            if interval is None:
                return
            try:
                self.run()
            except Exception as exc:  # monitoring must never take the service down
                logger.bind(component="health").error("background health checks failed: {}", exc)
            self._wake.wait(interval * self.interval_unit)


_DEFAULT: list[HealthMonitor] = []
_DEFAULT_LOCK = threading.Lock()


def health_monitor() -> HealthMonitor:
    """The process's default :class:`HealthMonitor`, the one ``mount`` uses unless given another.

    Example:
        >>> health_monitor() is health_monitor()
        True
    """
    with _DEFAULT_LOCK:
        if not _DEFAULT:
            _DEFAULT.append(HealthMonitor())
        return _DEFAULT[0]
