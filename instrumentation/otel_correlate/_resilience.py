"""Resilience for calls to unreliable dependencies: a circuit breaker and retry with backoff.

:class:`CircuitBreaker` stops calling a dependency that keeps failing (CLOSED →
OPEN), lets a few trial calls through after a recovery timeout (HALF_OPEN) and
closes again once they succeed. Its state is the ``circuit_breaker.state`` gauge
(0 closed, 1 half-open, 2 open); every transition is a loguru line, a
``circuit_breaker.state_change`` event on the current span and a count in
``circuit_breaker.transitions``.

:func:`retry_call` / :func:`retry_call_async` retry with exponential backoff
(1 s, 2 s, 4 s by default), wait at least what the server asked for
(``Retry-After``, Telegram's ``parameters.retry_after``), never retry while the
breaker is open and record every attempt as a ``retry.attempt`` span event.

Example:
    >>> breaker = CircuitBreaker("payments", failure_threshold=2)
    >>> @breaker
    ... def charge() -> str:
    ...     return "ok"
    >>> retry_call(charge, breaker=breaker, sleep=lambda s: None)
    'ok'
    >>> breaker.state
    <BreakerState.CLOSED: 'closed'>
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import random
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


class RetryableError(Exception):
    """A failure worth retrying, e.g. HTTP 429 or 5xx.

    Attributes:
        retry_after: Seconds the server asked us to wait (``Retry-After``), if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
class _Ticket:
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
        self._active: contextvars.ContextVar[tuple[_Ticket, ...]] = contextvars.ContextVar(
            f"otel_correlate.breaker.{name}", default=()
        )
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("otel_correlate")
        self._gauge = meter.create_gauge(
            "circuit_breaker.state",
            unit="1",
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
    def admit(self) -> _Ticket:
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
            ticket = _Ticket(self._generation)
        self._announce(changes)
        if refused is not None:
            raise CircuitOpenError(self.name, refused)
        return ticket

    def record(self, ticket: _Ticket, error: BaseException | None = None) -> None:
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


# --- retry ---------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between attempts.

    Example:
        >>> [RetryPolicy(base_delay=1.0, jitter=False).delay(n) for n in (1, 2, 3)]
        [1.0, 2.0, 4.0]

    Attributes:
        max_retries: Retries after the first attempt (``OTEL_CORRELATE_RETRY_MAX``, 3).
        base_delay: First wait in seconds, doubled each retry (``OTEL_CORRELATE_RETRY_BASE_DELAY``, 1).
        max_delay: Longest single wait; a server asking for longer makes us give up instead.
        jitter: Full jitter, a random wait up to the backoff (``OTEL_CORRELATE_RETRY_JITTER``, false).
    """

    max_retries: int = field(default_factory=_settings.RETRY_MAX_ATTEMPTS.get)
    base_delay: float = field(default_factory=_settings.RETRY_BASE_DELAY.get)
    max_delay: float = 60.0
    jitter: bool = field(default_factory=_settings.RETRY_JITTER.get)

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ValueError(f"max_retries={self.max_retries!r} is not valid: use an integer of at least 0.")
        if not 0 < self.base_delay <= self.max_delay:
            raise ValueError(
                f"base_delay={self.base_delay!r}, max_delay={self.max_delay!r} are not valid: "
                "use 0 < base_delay <= max_delay."
            )

    def delay(
        self,
        retry: int,
        *,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based), or ``None`` to give up.

        The wait is the backoff (with jitter, if on) or what the server asked for,
        whichever is longer; a server asking for more than ``max_delay`` means give up.
        """
        if retry > self.max_retries:
            return None
        backoff = float(min(self.base_delay * 2.0 ** (retry - 1), self.max_delay))
        if self.jitter:
            backoff *= rand()
        if retry_after is not None:
            if retry_after > self.max_delay:
                return None
            return max(backoff, retry_after)
        return backoff


@dataclass(frozen=True)
class RetryAttempt:
    """One attempt of a retried call, as recorded on the span and given to ``on_attempt``.

    Attributes:
        number: 1 for the first attempt.
        error: The exception it raised, ``None`` on success.
        delay: Seconds waited before the next attempt; ``None`` when there is none.
        retry_after: Seconds the server asked to wait, when it said.
    """

    number: int
    error: BaseException | None
    delay: float | None
    retry_after: float | None

    def event_attributes(self) -> dict[str, Any]:
        """The attributes of this attempt's ``retry.attempt`` span event."""
        attributes: dict[str, Any] = {
            "retry.attempt": self.number,
            "retry.outcome": "success"
            if self.error is None
            else ("retry" if self.delay is not None else "give_up"),
        }
        if self.error is not None:
            attributes["error.type"] = type(self.error).__qualname__
            attributes["error.message"] = str(self.error)[:500]
        if self.delay is not None:
            attributes["retry.delay_s"] = self.delay
        if self.retry_after is not None:
            attributes["retry.retry_after_s"] = self.retry_after
        return attributes


@dataclass(frozen=True)
class _Retry:
    policy: RetryPolicy
    breaker: CircuitBreaker | None
    retry_on: tuple[type[BaseException], ...]
    on_attempt: Callable[[RetryAttempt], None] | None
    rand: Callable[[], float]

    def after(self, number: int, error: BaseException | None) -> RetryAttempt:
        retry_after = getattr(error, "retry_after", None) if error is not None else None
        delay: float | None = None
        if (
            error is not None
            and isinstance(error, self.retry_on)
            and not isinstance(error, CircuitOpenError)
            and (self.breaker is None or self.breaker.state is not BreakerState.OPEN)
        ):
            delay = self.policy.delay(number, retry_after=retry_after, rand=self.rand)
        attempt = RetryAttempt(number, error, delay, retry_after)
        trace.get_current_span().add_event("retry.attempt", attempt.event_attributes())
        if self.on_attempt is not None:
            self.on_attempt(attempt)
        return attempt

    def admit(self) -> _Ticket | None:
        return self.breaker.admit() if self.breaker is not None else None

    def record(self, ticket: _Ticket | None, error: BaseException | None) -> None:
        if self.breaker is not None and ticket is not None:
            self.breaker.record(ticket, error)


def retry_call(
    func: Callable[[], T],
    *,
    policy: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    retry_on: tuple[type[BaseException], ...] = (RetryableError, ConnectionError, TimeoutError),
    sleep: Callable[[float], None] = time.sleep,
    on_attempt: Callable[[RetryAttempt], None] | None = None,
    rand: Callable[[], float] = random.random,
) -> T:
    """Call ``func`` until it succeeds, retrying ``retry_on`` errors with exponential backoff.

    Example:
        >>> retry_call(lambda: 42, sleep=lambda s: None)
        42

    Args:
        func: The call; raise :class:`RetryableError` (with ``retry_after``) for retryable outcomes.
        policy: Backoff and retry count; :class:`RetryPolicy` from the environment by default.
        breaker: Every attempt goes through it; an open breaker stops the retries at once.
        retry_on: Exception types worth retrying; others are raised after the first attempt.
        sleep: Waits between attempts; tests inject one that records.
        on_attempt: Called after every attempt.
        rand: Random source for jitter.

    Raises:
        CircuitOpenError: The breaker refused an attempt.
        Exception: The last attempt's error, once retries are exhausted or not allowed.
    """
    retry = _Retry(policy or RetryPolicy(), breaker, retry_on, on_attempt, rand)
    number = 0
    while True:
        number += 1
        ticket = retry.admit()
        try:
            result = func()
        except BaseException as exc:
            if not isinstance(exc, Exception):
                retry.record(ticket, exc)
                raise
            retry.record(ticket, exc)
            attempt = retry.after(number, exc)
            if attempt.delay is None:
                raise
            sleep(attempt.delay)
            continue
        retry.record(ticket, None)
        retry.after(number, None)
        return result


async def retry_call_async(
    func: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    retry_on: tuple[type[BaseException], ...] = (RetryableError, ConnectionError, TimeoutError),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_attempt: Callable[[RetryAttempt], None] | None = None,
    rand: Callable[[], float] = random.random,
) -> T:
    """The asyncio twin of :func:`retry_call`; ``func`` returns an awaitable.

    Example:
        >>> async def fetch() -> int:
        ...     return 42
        >>> asyncio.run(retry_call_async(fetch))
        42
    """
    retry = _Retry(policy or RetryPolicy(), breaker, retry_on, on_attempt, rand)
    number = 0
    while True:
        number += 1
        ticket = retry.admit()
        try:
            result = await func()
        except BaseException as exc:
            if not isinstance(exc, Exception):
                retry.record(ticket, exc)
                raise
            retry.record(ticket, exc)
            attempt = retry.after(number, exc)
            if attempt.delay is None:
                raise
            await sleep(attempt.delay)
            continue
        retry.record(ticket, None)
        retry.after(number, None)
        return result
