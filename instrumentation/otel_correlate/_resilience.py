"""A circuit breaker: stop calling a dependency that keeps failing, probe it, close again.

:class:`CircuitBreaker` stops calling a dependency that keeps failing (CLOSED →
OPEN), lets a few trial calls through after a recovery timeout (HALF_OPEN) and
closes again once they succeed. Its state is the ``circuit_breaker.state`` gauge
(0 closed, 1 half-open, 2 open); every transition is a loguru line, a
``circuit_breaker.state_change`` event on the current span and a count in
``circuit_breaker.transitions``. Retries that respect it live in
:mod:`otel_correlate._retry`.

Example:
    >>> breaker = CircuitBreaker("payments", failure_threshold=2)
    >>> @breaker
    ... def charge() -> str:
    ...     return "ok"
    >>> charge()
    'ok'
    >>> breaker.state
    <BreakerState.CLOSED: 'closed'>
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ParamSpec, TypeVar

from loguru import logger
from opentelemetry import metrics, trace

from otel_correlate import _settings

P = ParamSpec("P")
T = TypeVar("T")


class BreakerState(Enum):
    """The three states of a :class:`CircuitBreaker`; ``metric_value`` is the gauge value."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def metric_value(self) -> int:
        """0 closed, 1 half-open, 2 open: the value of ``circuit_breaker.state``."""
        return {"closed": 0, "half_open": 1, "open": 2}[self.value]


class CircuitOpenError(RuntimeError):
    """A call was refused because its circuit breaker is open (or its trial slots are taken).

    Attributes:
        breaker: The breaker's name.
        retry_in: Seconds until the breaker lets a trial call through (0 when half-open).
    """

    def __init__(self, breaker: str, retry_in: float) -> None:
        super().__init__(
            f"circuit breaker {breaker!r} is open: the dependency failed repeatedly, so calls are "
            f"refused for another {retry_in:.1f} s. Check the dependency; the breaker retries by itself."
        )
        self.breaker = breaker
        self.retry_in = retry_in


@dataclass(frozen=True)
class BreakerOptions:
    """When a :class:`CircuitBreaker` opens and closes.

    Attributes:
        failure_threshold: Consecutive failures that open it (``OTEL_CORRELATE_BREAKER_FAILURE_THRESHOLD``, 10).
        recovery_timeout: Seconds open before trial calls (``OTEL_CORRELATE_BREAKER_RECOVERY_TIMEOUT``, 120).
        success_threshold: Successful trials that close it (``OTEL_CORRELATE_BREAKER_SUCCESS_THRESHOLD``, 3).
    """

    failure_threshold: int = field(default_factory=_settings.BREAKER_FAILURE_THRESHOLD.get)
    recovery_timeout: float = field(default_factory=_settings.BREAKER_RECOVERY_TIMEOUT.get)
    success_threshold: int = field(default_factory=_settings.BREAKER_SUCCESS_THRESHOLD.get)

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "success_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is not valid: use an integer of at least 1.")
        if not self.recovery_timeout > 0:
            raise ValueError(f"recovery_timeout={self.recovery_timeout!r} is not valid: use seconds > 0.")


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker's state at one moment, as ``/monitoring/circuit-breakers`` shows it."""

    name: str
    state: BreakerState
    consecutive_failures: int
    trial_successes: int
    retry_in: float
    options: BreakerOptions

    def to_json(self) -> dict[str, Any]:
        """The snapshot as a JSON-ready dict with camelCase keys."""
        return {
            "name": self.name,
            "state": self.state.value,
            "consecutiveFailures": self.consecutive_failures,
            "trialSuccesses": self.trial_successes,
            "retryInSeconds": round(self.retry_in, 3),
            "failureThreshold": self.options.failure_threshold,
            "recoveryTimeoutSeconds": self.options.recovery_timeout,
            "successThreshold": self.options.success_threshold,
        }


@dataclass(frozen=True)
class BreakerTicket:
    """An admitted call, handed back to :meth:`CircuitBreaker.record` with its outcome."""

    generation: int


_BREAKERS: weakref.WeakValueDictionary[str, CircuitBreaker] = weakref.WeakValueDictionary()


def circuit_breakers() -> list[CircuitBreaker]:
    """Every live :class:`CircuitBreaker` of this process, sorted by name."""
    return sorted(_BREAKERS.values(), key=lambda b: b.name)


class CircuitBreaker:
    """Stops calling a failing dependency, then probes it and closes again.

    Safe under threads and asyncio (a lock held only for bookkeeping, never across
    a call). Usable as a decorator (sync or async functions), a context manager
    (``with`` / ``async with``) or through :meth:`call`. Exceptions listed in
    ``ignore`` mean "the dependency answered, the request was bad": they pass
    through and count as a success.

    Example:
        >>> breaker = CircuitBreaker("telegram", failure_threshold=10, recovery_timeout=120)
        >>> with breaker:
        ...     pass  # the protected call
        >>> breaker.snapshot().state.value
        'closed'

    Args:
        name: Names the breaker in metrics (attribute ``breaker``), logs and spans.
        options: Thresholds; the keyword arguments below override single fields.
        failure_threshold: See :class:`BreakerOptions`.
        recovery_timeout: See :class:`BreakerOptions`.
        success_threshold: See :class:`BreakerOptions`.
        ignore: Exception types that do not count as failures.
        clock: Monotonic seconds; tests inject a fake one.
        meter_provider: Where the state gauge goes; the global provider by default.
    """

    def __init__(
        self,
        name: str,
        *,
        options: BreakerOptions | None = None,
        failure_threshold: int | None = None,
        recovery_timeout: float | None = None,
        success_threshold: int | None = None,
        ignore: tuple[type[BaseException], ...] = (),
        clock: Callable[[], float] = time.monotonic,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        base = options or BreakerOptions()
        self.name = name
        self.options = BreakerOptions(
            failure_threshold=base.failure_threshold if failure_threshold is None else failure_threshold,
            recovery_timeout=base.recovery_timeout if recovery_timeout is None else recovery_timeout,
            success_threshold=base.success_threshold if success_threshold is None else success_threshold,
        )
        self.ignore = ignore
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._failures = 0
        self._trial_successes = 0
        self._trials_in_flight = 0
        self._opened_at = 0.0
        self._active: contextvars.ContextVar[tuple[BreakerTicket, ...]] = contextvars.ContextVar(
            f"otel_correlate.breaker.{name}", default=()
        )
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("otel_correlate")
        self._gauge = meter.create_gauge(
            "circuit_breaker.state",
            unit="{state}",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        )
        self._transitions = meter.create_counter(
            "circuit_breaker.transitions",
            unit="{transition}",
            description="Circuit breaker state changes, by breaker and new state.",
        )
        self._gauge.set(0, {"breaker": name})
        _BREAKERS[name] = self

    # --- state -------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose timeout passed becomes half-open here."""
        with self._lock:
            changes = self._refresh()
        self._announce(changes)
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        """The state, counters and time to the next trial, read atomically."""
        with self._lock:
            changes = self._refresh()
            retry_in = 0.0
            if self._state is BreakerState.OPEN:
                retry_in = max(0.0, self._opened_at + self.options.recovery_timeout - self._clock())
            snap = BreakerSnapshot(
                self.name, self._state, self._failures, self._trial_successes, retry_in, self.options
            )
        self._announce(changes)
        return snap

    def _refresh(self) -> list[tuple[BreakerState, BreakerState]]:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.options.recovery_timeout
        ):
            return [self._move(BreakerState.HALF_OPEN)]
        return []

    def _move(self, new: BreakerState) -> tuple[BreakerState, BreakerState]:
        old = self._state
        self._state = new
        self._generation += 1
        self._trial_successes = 0
        self._trials_in_flight = 0
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
        if new is BreakerState.CLOSED:
            self._failures = 0
        return old, new

    def _announce(self, changes: list[tuple[BreakerState, BreakerState]]) -> None:
        for old, new in changes:
            attributes = {"breaker": self.name}
            self._gauge.set(new.metric_value, attributes)
            self._transitions.add(1, {"breaker": self.name, "state": new.value})
            trace.get_current_span().add_event(
                "circuit_breaker.state_change",
                {
                    "circuit_breaker.name": self.name,
                    "circuit_breaker.from": old.value,
                    "circuit_breaker.to": new.value,
                },
            )
            level = "WARNING" if new is BreakerState.OPEN else "INFO"
            logger.bind(breaker=self.name, from_state=old.value, to_state=new.value).log(
                level, "circuit breaker {} changed from {} to {}", self.name, old.value, new.value
            )

    # --- the protocol: admit, then record ----------------------------------
    def admit(self) -> BreakerTicket:
        """Ask to make one call; returns a ticket for :meth:`record`.

        Raises:
            CircuitOpenError: The breaker is open, or half-open with all trial slots taken.
        """
        with self._lock:
            changes = self._refresh()
            refused: float | None = None
            if self._state is BreakerState.OPEN:
                refused = max(0.0, self._opened_at + self.options.recovery_timeout - self._clock())
            elif self._state is BreakerState.HALF_OPEN:
                if self._trials_in_flight + self._trial_successes >= self.options.success_threshold:
                    refused = 0.0
                else:
                    self._trials_in_flight += 1
            ticket = BreakerTicket(self._generation)
        self._announce(changes)
        if refused is not None:
            raise CircuitOpenError(self.name, refused)
        return ticket

    def record(self, ticket: BreakerTicket, error: BaseException | None = None) -> None:
        """Report how an admitted call ended: ``error`` is ``None`` on success.

        Outcomes of calls admitted before the last state change are ignored; a call
        cancelled or interrupted (``BaseException`` that is not an ``Exception``)
        only frees its trial slot.
        """
        failed = error is not None and not isinstance(error, self.ignore)
        with self._lock:
            changes: list[tuple[BreakerState, BreakerState]] = []
            if ticket.generation != self._generation:
                pass
            elif error is not None and not isinstance(error, Exception):
                if self._state is BreakerState.HALF_OPEN:
                    self._trials_in_flight -= 1
            elif self._state is BreakerState.CLOSED:
                self._failures = self._failures + 1 if failed else 0
                if self._failures >= self.options.failure_threshold:
                    changes.append(self._move(BreakerState.OPEN))
            elif self._state is BreakerState.HALF_OPEN:
                self._trials_in_flight -= 1
                if failed:
                    changes.append(self._move(BreakerState.OPEN))
                else:
                    self._trial_successes += 1
                    if self._trial_successes >= self.options.success_threshold:
                        changes.append(self._move(BreakerState.CLOSED))
        self._announce(changes)

    # --- conveniences --------------------------------------------------------
    def call(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``func`` through the breaker.

        Raises:
            CircuitOpenError: The breaker refused the call; ``func`` was not called.
        """
        ticket = self.admit()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self.record(ticket, exc)
            raise
        self.record(ticket)
        return result

    async def call_async(self, func: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``func`` through the breaker (see :meth:`call`)."""
        ticket = self.admit()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            self.record(ticket, exc)
            raise
        self.record(ticket)
        return result

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Decorate a sync or async function so every call goes through the breaker."""
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await self.call_async(func, *args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(func, *args, **kwargs)

        return wrapper

    def __enter__(self) -> CircuitBreaker:
        ticket = self.admit()
        self._active.set((*self._active.get(), ticket))
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        *rest, ticket = self._active.get()
        self._active.set(tuple(rest))
        self.record(ticket, exc)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)
