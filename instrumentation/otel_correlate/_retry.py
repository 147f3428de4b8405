"""Retry with exponential backoff that honours the server and the circuit breaker.

:func:`retry_call` / :func:`retry_call_async` retry with exponential backoff
(1 s, 2 s, 4 s by default), wait at least what the server asked for
(``Retry-After``, Telegram's ``parameters.retry_after``), never retry while the
breaker is open and record every attempt as a ``retry.attempt`` span event.

Example:
    >>> slept = []
    >>> answers = [RetryableError("429", retry_after=3), "sent"]
    >>> def call() -> str:
    ...     answer = answers.pop(0)
    ...     if isinstance(answer, Exception):
    ...         raise answer
    ...     return answer
    >>> retry_call(call, sleep=slept.append), slept
    ('sent', [3])
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from opentelemetry import trace

from otel_correlate import _settings
from otel_correlate._resilience import BreakerState, BreakerTicket, CircuitBreaker, CircuitOpenError

T = TypeVar("T")


class RetryableError(Exception):
    """A failure worth retrying, e.g. HTTP 429 or 5xx.

    Attributes:
        retry_after: Seconds the server asked us to wait (``Retry-After``), if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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

    def admit(self) -> BreakerTicket | None:
        return self.breaker.admit() if self.breaker is not None else None

    def record(self, ticket: BreakerTicket | None, error: BaseException | None) -> None:
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


def retry_after_seconds(response: httpx.Response, body: object = None) -> float | None:
    """Seconds the server asked to wait: Telegram's ``parameters.retry_after``, else ``Retry-After``.

    Example:
        >>> retry_after_seconds(httpx.Response(429, headers={"Retry-After": "3"}))
        3.0
    """
    if isinstance(body, Mapping):
        parameters = body.get("parameters")
        if isinstance(parameters, Mapping):
            value = parameters.get("retry_after")
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
    header = response.headers.get("Retry-After")
    if header is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(header))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
    return None
