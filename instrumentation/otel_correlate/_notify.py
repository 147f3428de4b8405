"""Telegram notifications that never break the order flow.

:class:`TelegramNotifier` posts to the Bot API (``POST {api}/bot{token}/sendMessage``)
over httpx, through a :class:`~otel_correlate._resilience.CircuitBreaker` and
:func:`~otel_correlate._retry.retry_call`; a message that still fails becomes
a dead letter. :meth:`TelegramNotifier.send` never raises and takes at most
``(max_retries + 1) * timeout`` plus the backoff waits; :meth:`TelegramNotifier.submit`
returns at once and sends from a small bounded background worker.

Each send is one ``telegram sendMessage`` CLIENT span whose events are the
attempts; the URL on it has the token redacted, and httpx's own instrumentation
is suppressed for the call so the token never reaches a span and orderId never
leaves in baggage to a third party. Metrics: ``notifications`` (``channel``,
``outcome`` sent|failed), ``notification.retries`` (``channel``) and, through the
dead-letter store, ``dead_letters`` (``target``).

Example:
    >>> notifier = TelegramNotifier(enabled=False)
    >>> notifier.send("order A-1 paid").outcome
    'disabled'
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from loguru import logger
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_correlate import _settings
from otel_correlate._background import BoundedWorker
from otel_correlate._business_metrics import record_notification
from otel_correlate._context import business_context
from otel_correlate._dead_letters import DeadLetter, DeadLetterStore
from otel_correlate._resilience import CircuitBreaker
from otel_correlate._retry import (
    RetryableError,
    RetryAttempt,
    RetryPolicy,
    retry_after_seconds,
    retry_call,
    retry_call_async,
)

CHANNEL = "telegram"
_RETRY_ON = (RetryableError, httpx.TransportError)


class TelegramRejected(Exception):
    """Telegram refused the message (4xx other than 429): retrying will not help.

    The API answered, so for the circuit breaker the call succeeded; the
    notifier returns it from the attempt and raises it only after the breaker
    counted the success.
    """


@dataclass(frozen=True)
class TelegramOptions:
    """Where and how :class:`TelegramNotifier` sends; every field falls back to its variable.

    Attributes:
        enabled: Feature flag (``OTEL_CORRELATE_TELEGRAM_ENABLED``, false): when off, sends do nothing.
        api_url: Bot API base URL (``OTEL_CORRELATE_TELEGRAM_API_URL``).
        token: Bot token (``OTEL_CORRELATE_TELEGRAM_BOT_TOKEN``, or the file in ``..._TOKEN_FILE``).
        chat_id: Default chat (``OTEL_CORRELATE_TELEGRAM_CHAT_ID``).
        timeout: Seconds per API call (``OTEL_CORRELATE_TELEGRAM_TIMEOUT``, 10).
    """

    enabled: bool = field(default_factory=_settings.TELEGRAM_ENABLED.get)
    api_url: str = field(default_factory=_settings.TELEGRAM_API_URL.get)
    token: str = field(default_factory=lambda: _token_from_env())
    chat_id: str = field(default_factory=_settings.TELEGRAM_CHAT_ID.get)
    timeout: float = field(default_factory=_settings.TELEGRAM_TIMEOUT.get)

    def __post_init__(self) -> None:
        if self.enabled and not self.token:
            raise ValueError(
                "Telegram notifications are enabled but there is no bot token: set "
                "OTEL_CORRELATE_TELEGRAM_BOT_TOKEN_FILE (or OTEL_CORRELATE_TELEGRAM_BOT_TOKEN), pass token=, "
                "or set OTEL_CORRELATE_TELEGRAM_ENABLED=false."
            )
        if not self.timeout > 0:
            raise ValueError(f"timeout={self.timeout!r} is not valid: use seconds > 0.")

    @property
    def redacted_url(self) -> str:
        """The sendMessage URL with the token hidden, for spans and logs."""
        return f"{self.api_url}/bot<redacted>/sendMessage"


def _token_from_env() -> str:
    path = _settings.TELEGRAM_BOT_TOKEN_FILE.get()
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"OTEL_CORRELATE_TELEGRAM_BOT_TOKEN_FILE={path!r} cannot be read ({exc.strerror}); "
                "mount the secret there or unset the variable."
            ) from exc
    return _settings.TELEGRAM_BOT_TOKEN.get()


@dataclass(frozen=True)
class NotificationResult:
    """How one notification ended.

    Attributes:
        outcome: ``sent``, ``failed`` (dead-lettered), ``queued`` (submitted) or ``disabled``.
        attempts: API calls made.
        error: Why it failed, when it did.
        dead_letter: The dead letter written for it, when it failed.
        message_id: Telegram's id of the sent message.
    """

    outcome: str
    attempts: int = 0
    error: str | None = None
    dead_letter: DeadLetter | None = None
    message_id: int | None = None


class SuccessWindow:
    """Sent and failed notifications of the last ``seconds`` (one hour by default).

    Example:
        >>> window = SuccessWindow(seconds=3600)
        >>> window.add(True); window.add(False); window.rate()
        0.5
    """

    def __init__(self, *, seconds: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._events: deque[tuple[float, bool]] = deque()
        self._lock = threading.Lock()

    def add(self, ok: bool) -> None:
        """Record one outcome now."""
        with self._lock:
            self._events.append((self._clock(), ok))
            self._prune()

    def _prune(self) -> None:
        horizon = self._clock() - self.seconds
        while self._events and self._events[0][0] <= horizon:
            self._events.popleft()

    def counts(self) -> tuple[int, int]:
        """``(sent, failed)`` within the window."""
        with self._lock:
            self._prune()
            sent = sum(1 for _, ok in self._events if ok)
            return sent, len(self._events) - sent

    def rate(self) -> float | None:
        """Share of sent notifications in the window; ``None`` when there were none."""
        sent, failed = self.counts()
        return None if sent + failed == 0 else sent / (sent + failed)


_NOTIFIERS: weakref.WeakSet[TelegramNotifier] = weakref.WeakSet()


def notification_summary() -> dict[str, Any]:
    """Sent, failed and success rate of the last hour per channel, over every live notifier.

    Example:
        >>> notification_summary()["windowSeconds"]
        3600
    """
    channels: dict[str, list[int]] = {}
    for notifier in list(_NOTIFIERS):
        sent, failed = notifier.window.counts()
        totals = channels.setdefault(notifier.channel, [0, 0])
        totals[0] += sent
        totals[1] += failed
    return {
        "windowSeconds": 3600,
        "channels": {
            name: {
                "sent": sent,
                "failed": failed,
                "successRate": None if not sent + failed else sent / (sent + failed),
            }
            for name, (sent, failed) in sorted(channels.items())
        },
    }


class TelegramNotifier:
    """Telegram notifications with a breaker, retries, dead letters and telemetry.

    Example:
        >>> notifier = TelegramNotifier(enabled=True, token="123:abc", chat_id="42",
        ...                             api_url="http://127.0.0.1:8765")  # doctest: +SKIP
        >>> notifier.submit("order A-1 paid")  # returns at once  # doctest: +SKIP
        True

    Args:
        options: Where to send; the keyword arguments below override single fields.
        enabled: See :class:`TelegramOptions`.
        api_url: See :class:`TelegramOptions`.
        token: See :class:`TelegramOptions`.
        chat_id: See :class:`TelegramOptions`.
        timeout: See :class:`TelegramOptions`.
        breaker: Guards the API; ``CircuitBreaker("telegram")`` from the environment by default.
        retry: Backoff; :class:`RetryPolicy` from the environment by default.
        dead_letters: Where failed messages go; the file in ``OTEL_CORRELATE_DEAD_LETTER_FILE`` by default.
        queue_size: Messages :meth:`submit` holds before it dead-letters new ones instead.
        sleep: Waits between sync attempts; tests inject a recorder.
        async_sleep: Waits between async attempts.
        clock: Monotonic seconds for the one-hour success window.
        tracer_provider: Where the send spans go; the global provider by default.
    """

    channel = CHANNEL

    def __init__(
        self,
        *,
        options: TelegramOptions | None = None,
        enabled: bool | None = None,
        api_url: str | None = None,
        token: str | None = None,
        chat_id: str | None = None,
        timeout: float | None = None,
        breaker: CircuitBreaker | None = None,
        retry: RetryPolicy | None = None,
        dead_letters: DeadLetterStore | None = None,
        queue_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        overrides = {
            "enabled": enabled,
            "api_url": api_url,
            "token": token,
            "chat_id": chat_id,
            "timeout": timeout,
        }
        given: dict[str, Any] = {key: value for key, value in overrides.items() if value is not None}
        options = TelegramOptions(**given) if options is None else dataclasses.replace(options, **given)
        self.options = options
        self.breaker = breaker or CircuitBreaker(CHANNEL)
        self.retry = retry or RetryPolicy()
        self.dead_letters = dead_letters or DeadLetterStore()
        self.window = SuccessWindow(clock=clock)
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("otel_correlate")
        self._retries = metrics.get_meter("otel_correlate").create_counter(
            "notification.retries",
            unit="{retry}",
            description="Notification attempts that were retried, by channel.",
        )
        self._client = httpx.Client(timeout=options.timeout)
        self._worker: BoundedWorker[tuple[str, str | None]] = BoundedWorker(
            lambda item: self.send(item[0], chat_id=item[1]),
            name="otel-correlate-telegram",
            queue_size=queue_size,
        )
        _NOTIFIERS.add(self)

    # --- sending ----------------------------------------------------------------
    def send(self, text: str, *, chat_id: str | None = None) -> NotificationResult:
        """Send now, retrying; never raises. A message that fails for good is dead-lettered.

        Example:
            >>> TelegramNotifier(enabled=False).send("hello").outcome
            'disabled'
        """
        if not self.options.enabled:
            return NotificationResult("disabled")
        payload = {"chat_id": chat_id or self.options.chat_id, "text": text}
        with self._span() as span:
            attempts: list[RetryAttempt] = []
            try:
                result = self._with_retries(payload, attempts)
            except Exception as exc:
                return self._failed(span, payload, exc, len(attempts))
            return self._sent(span, result, len(attempts))

    async def send_async(self, text: str, *, chat_id: str | None = None) -> NotificationResult:
        """The asyncio twin of :meth:`send`: never raises, waits without blocking the loop."""
        if not self.options.enabled:
            return NotificationResult("disabled")
        payload = {"chat_id": chat_id or self.options.chat_id, "text": text}
        with self._span() as span:
            attempts: list[RetryAttempt] = []
            try:
                result = await self._with_retries_async(payload, attempts)
            except Exception as exc:
                return await asyncio.to_thread(self._failed, span, payload, exc, len(attempts))
            return self._sent(span, result, len(attempts))

    def submit(self, text: str, *, chat_id: str | None = None) -> bool:
        """Queue the message for the background worker and return at once; never raises.

        The worker sends with the business keys of the caller's context. When the
        queue is full the message is dead-lettered instead and ``False`` returned.

        Example:
            >>> TelegramNotifier(enabled=False).submit("hello")
            True
        """
        if not self.options.enabled:
            return True
        try:
            if self._worker.submit((text, chat_id)):
                return True
            error = f"notification queue full ({self._worker.capacity} waiting); not sent"
        except Exception as exc:  # e.g. no thread can be started at interpreter shutdown
            error = f"notification could not be queued: {exc}"
        with contextlib.suppress(Exception):
            record_notification(channel=self.channel, outcome="failed")
            self.window.add(False)
            self.dead_letters.record(
                target=self.channel,
                payload={"chat_id": chat_id or self.options.chat_id, "text": text},
                error=error,
            )
        return False

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted message was handled; ``False`` when ``timeout`` passed first."""
        return self._worker.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued (up to ``timeout``), stop the worker and close the HTTP client."""
        self._worker.close(timeout)
        self._client.close()

    def deliver(self, letter: DeadLetter) -> bool:
        """Re-send a dead letter (replay): ``True`` when delivered; never dead-letters it again."""
        keys = {
            key: value
            for key, value in (("requestId", letter.requestId), ("orderId", letter.orderId))
            if value
        }
        with business_context(**keys), self._span() as span:
            span.set_attribute("dead_letter.id", letter.id)
            attempts: list[RetryAttempt] = []
            try:
                result = self._with_retries(letter.payload, attempts)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, self._scrub(str(exc))))
                logger.bind(dead_letter_id=letter.id).warning(
                    "replay of dead letter {} failed: {}", letter.id, self._scrub(str(exc))
                )
                return False
            self._sent(span, result, len(attempts))
            return True

    def replay_dead_letters(self) -> tuple[int, int]:
        """Re-send this notifier's dead letters; returns ``(delivered, kept)``."""
        result = self.dead_letters.replay(
            lambda letter: letter.target == self.channel and self.deliver(letter)
        )
        return len(result.delivered), len(result.kept)

    # --- internals ----------------------------------------------------------------
    @contextlib.contextmanager
    def _span(self) -> Iterator[trace.Span]:
        with self._tracer.start_as_current_span(
            "telegram sendMessage",
            kind=SpanKind.CLIENT,
            attributes={
                "notification.channel": self.channel,
                "http.request.method": "POST",
                "url.full": self.options.redacted_url,
                "server.address": httpx.URL(self.options.api_url).host,
            },
        ) as span:
            yield span

    def _on_attempt(self, attempts: list[RetryAttempt]) -> Callable[[RetryAttempt], None]:
        def on_attempt(attempt: RetryAttempt) -> None:
            attempts.append(attempt)
            if attempt.delay is not None:
                self._retries.add(1, {"channel": self.channel})
                logger.bind(attempt=attempt.number, delay_s=attempt.delay).warning(
                    "telegram attempt {} failed ({}); retrying in {:.1f} s",
                    attempt.number,
                    self._scrub(str(attempt.error)),
                    attempt.delay,
                )

        return on_attempt

    def _with_retries(self, payload: Mapping[str, Any], attempts: list[RetryAttempt]) -> Mapping[str, Any]:
        result = retry_call(
            lambda: self._post(payload),
            policy=self.retry,
            breaker=self.breaker,
            retry_on=_RETRY_ON,
            sleep=self._sleep,
            on_attempt=self._on_attempt(attempts),
        )
        if isinstance(result, TelegramRejected):
            raise result
        return result

    async def _with_retries_async(
        self, payload: Mapping[str, Any], attempts: list[RetryAttempt]
    ) -> Mapping[str, Any]:
        async with httpx.AsyncClient(timeout=self.options.timeout) as client:
            result = await retry_call_async(
                lambda: self._post_async(client, payload),
                policy=self.retry,
                breaker=self.breaker,
                retry_on=_RETRY_ON,
                sleep=self._async_sleep,
                on_attempt=self._on_attempt(attempts),
            )
        if isinstance(result, TelegramRejected):
            raise result
        return result

    def _url(self) -> str:
        return f"{self.options.api_url}/bot{self.options.token}/sendMessage"

    def _post(self, payload: Mapping[str, Any]) -> Mapping[str, Any] | TelegramRejected:
        with suppress_http_instrumentation():
            response = self._client.post(self._url(), json=dict(payload))
        return self._check(response)

    async def _post_async(
        self, client: httpx.AsyncClient, payload: Mapping[str, Any]
    ) -> Mapping[str, Any] | TelegramRejected:
        with suppress_http_instrumentation():
            response = await client.post(self._url(), json=dict(payload))
        return self._check(response)

    def _check(self, response: httpx.Response) -> Mapping[str, Any] | TelegramRejected:
        trace.get_current_span().set_attribute("http.response.status_code", response.status_code)
        try:
            body: object = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and isinstance(body, Mapping) and body.get("ok") is True:
            result = body.get("result")
            return result if isinstance(result, Mapping) else {}
        description = body.get("description") if isinstance(body, Mapping) else response.text[:200]
        message = f"Telegram answered HTTP {response.status_code}: {description}"
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(message, retry_after=retry_after_seconds(response, body))
        return TelegramRejected(f"{message}. Check the bot token and the chat id; retrying will not help.")

    def _scrub(self, text: str) -> str:
        return text.replace(self.options.token, "<redacted>") if self.options.token else text

    def _sent(self, span: trace.Span, result: Mapping[str, Any], attempts: int) -> NotificationResult:
        message_id = result.get("message_id")
        record_notification(channel=self.channel, outcome="sent")
        self.window.add(True)
        span.set_attribute("notification.attempts", attempts)
        logger.bind(attempts=attempts).info("telegram notification sent after {} attempt(s)", attempts)
        return NotificationResult(
            "sent", attempts, message_id=message_id if isinstance(message_id, int) else None
        )

    def _failed(
        self, span: trace.Span, payload: Mapping[str, Any], exc: Exception, attempts: int
    ) -> NotificationResult:
        error = self._scrub(f"{type(exc).__name__}: {exc}")
        span.set_attribute("notification.attempts", attempts)
        span.set_status(Status(StatusCode.ERROR, error))
        record_notification(channel=self.channel, outcome="failed")
        self.window.add(False)
        letter: DeadLetter | None = None
        try:
            letter = self.dead_letters.record(
                target=self.channel, payload=payload, error=error, attempts=attempts
            )
        except OSError as write_error:
            logger.bind(target=self.channel).critical(
                "DEAD_LETTER could not be written to {}: {}", self.dead_letters.path, write_error
            )
        return NotificationResult("failed", attempts, error=error, dead_letter=letter)
