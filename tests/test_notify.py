"""TelegramNotifier against the real local Bot API stub over real HTTP: success, 429, 500s,
timeouts, connection refused, the breaker, dead letters, replay and fire-and-forget."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.telegram_stub import TelegramStub

from otel_correlate import business_context
from otel_correlate._capture import TelemetryCapture
from otel_correlate._dead_letters import DeadLetterStore
from otel_correlate._notify import SuccessWindow, TelegramNotifier, notification_summary, retry_after_seconds
from otel_correlate._resilience import BreakerState, CircuitBreaker
from otel_correlate._retry import RetryPolicy

TOKEN = "123456:SECRET-token"


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def stub() -> Iterator[TelegramStub]:
    with TelegramStub(token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_stub(stub: TelegramStub) -> None:
    control(stub, "reset")


def control(stub: TelegramStub, action: str, body: Any = None) -> None:
    response = httpx.post(f"{stub.url}/_stub/{action}", json=body, timeout=5)
    assert response.status_code == 200, response.text


def received(stub: TelegramStub) -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = httpx.get(f"{stub.url}/_stub/messages", timeout=5).json()
    return data


def make(stub_url: str, tmp_path: Path, slept: list[float], **kwargs: Any) -> TelegramNotifier:
    options: dict[str, Any] = {
        "enabled": True,
        "api_url": stub_url,
        "token": TOKEN,
        "chat_id": "42",
        "timeout": 2.0,
        "breaker": CircuitBreaker(f"tg-{time.monotonic_ns()}", clock=FakeClock()),
        "retry": RetryPolicy(max_retries=3, base_delay=1.0, jitter=False),
        "dead_letters": DeadLetterStore(tmp_path / "dead-letters.jsonl"),
        "sleep": slept.append,
    }
    options.update(kwargs)
    return TelegramNotifier(**options)


def points(capture: TelemetryCapture) -> list[tuple[str, dict[str, Any], float]]:
    wanted = {"notifications", "notification.retries", "dead_letters"}
    return sorted((p.name, p.attributes, p.value) for p in capture.metrics() if p.name in wanted)


def send_spans(capture: TelemetryCapture) -> list[Any]:
    return [s for s in capture.spans() if s.name == "telegram sendMessage"]


def test_success_sends_one_message_on_one_client_span(
    stub: TelegramStub, tmp_path: Path, otel_capture: TelemetryCapture
) -> None:
    notifier = make(stub.url, tmp_path, [])
    with business_context(orderId="A-1", requestId="req-1"):
        result = notifier.send("order A-1 paid")
    assert (result.outcome, result.attempts, result.error, result.message_id) == ("sent", 1, None, 1)
    assert received(stub)["messages"] == [{"chat_id": "42", "text": "order A-1 paid", "message_id": 1}]
    [span] = send_spans(otel_capture)
    assert span.kind.name == "CLIENT"
    assert dict(span.attributes or {}) == {
        "notification.channel": "telegram",
        "http.request.method": "POST",
        "url.full": f"{stub.url}/bot<redacted>/sendMessage",
        "server.address": "127.0.0.1",
        "http.response.status_code": 200,
        "notification.attempts": 1,
        "orderId": "A-1",
        "requestId": "req-1",
    }
    assert [dict(e.attributes or {}) for e in span.events] == [
        {"retry.attempt": 1, "retry.outcome": "success"}
    ]
    assert all(TOKEN not in json.dumps(dict(s.attributes or {})) for s in otel_capture.spans())
    assert points(otel_capture) == [("notifications", {"channel": "telegram", "outcome": "sent"}, 1)]
    assert not (tmp_path / "dead-letters.jsonl").exists()
    notifier.close()


def test_rate_limit_waits_what_telegram_asks_then_sends(
    stub: TelegramStub, tmp_path: Path, otel_capture: TelemetryCapture
) -> None:
    control(stub, "mode", {"mode": "rate_limit", "retry_after": 3, "times": 2})
    slept: list[float] = []
    notifier = make(stub.url, tmp_path, slept)
    result = notifier.send("order A-2 shipped")
    assert (result.outcome, result.attempts) == ("sent", 3)
    assert slept == [3.0, 3.0]  # retry_after beats the 1 s and 2 s backoff
    assert [a["mode"] for a in received(stub)["attempts"]] == ["rate_limit", "rate_limit", "ok"]
    assert received(stub)["messages"] == [{"chat_id": "42", "text": "order A-2 shipped", "message_id": 1}]
    [span] = send_spans(otel_capture)
    assert dict(span.events[0].attributes or {}) == {
        "retry.attempt": 1,
        "retry.outcome": "retry",
        "error.type": "RetryableError",
        "error.message": "Telegram answered HTTP 429: Too Many Requests: retry after 3",
        "retry.delay_s": 3.0,
        "retry.retry_after_s": 3.0,
    }
    assert points(otel_capture) == [
        ("notification.retries", {"channel": "telegram"}, 2),
        ("notifications", {"channel": "telegram", "outcome": "sent"}, 1),
    ]
    notifier.close()


def test_server_errors_retry_1_2_4_then_dead_letter_line_and_file(
    stub: TelegramStub, tmp_path: Path, otel_capture: TelemetryCapture
) -> None:
    control(stub, "mode", {"mode": "error", "status": 500})
    slept: list[float] = []
    notifier = make(stub.url, tmp_path, slept)
    with business_context(orderId="A-3", requestId="req-3"):
        result = notifier.send("order A-3 paid")
    error = "RetryableError: Telegram answered HTTP 500: Internal Server Error"
    assert (result.outcome, result.attempts, result.error) == ("failed", 4, error)
    assert slept == [1.0, 2.0, 4.0]
    assert len(received(stub)["attempts"]) == 4
    assert received(stub)["messages"] == []
    [line] = (tmp_path / "dead-letters.jsonl").read_text().splitlines()
    assert result.dead_letter is not None
    assert json.loads(line) == {
        "id": result.dead_letter.id,
        "timestamp": result.dead_letter.timestamp,
        "target": "telegram",
        "payload": {"chat_id": "42", "text": "order A-3 paid"},
        "error": error,
        "attempts": 4,
        "requestId": "req-3",
        "orderId": "A-3",
    }
    [record] = [r.log_record for r in otel_capture.logs() if r.log_record.severity_text == "FATAL"]
    assert record.body == f"DEAD_LETTER requestId=req-3 orderId=A-3 target=telegram error={error}"
    assert {k: v for k, v in (record.attributes or {}).items() if not k.startswith("code.")} == {
        "requestId": "req-3",
        "orderId": "A-3",
        "target": "telegram",
        "error": error,
        "attempts": 4,
        "dead_letter_id": result.dead_letter.id,
    }
    [span] = send_spans(otel_capture)
    assert span.status.status_code.name == "ERROR"
    assert [e.name for e in span.events] == ["retry.attempt"] * 4 + ["dead_letter"]
    assert record.trace_id == span.context.trace_id
    assert points(otel_capture) == [
        ("dead_letters", {"target": "telegram"}, 1),
        ("notification.retries", {"channel": "telegram"}, 3),
        ("notifications", {"channel": "telegram", "outcome": "failed"}, 1),
    ]
    notifier.close()


def test_timeouts_are_retried_and_bounded(stub: TelegramStub, tmp_path: Path) -> None:
    control(stub, "mode", {"mode": "timeout", "delay": 3})
    slept: list[float] = []
    notifier = make(stub.url, tmp_path, slept, timeout=0.2, retry=RetryPolicy(max_retries=1, jitter=False))
    started = time.monotonic()
    result = notifier.send("order A-4 paid")
    assert time.monotonic() - started < 2.5  # unbounded, one attempt alone would wait the stub's 3 s
    assert (result.outcome, result.attempts, result.error) == ("failed", 2, "ReadTimeout: timed out")
    assert slept == [1.0]
    assert [letter.payload["text"] for letter in notifier.dead_letters.letters()] == ["order A-4 paid"]
    notifier.close()


def test_connection_refused_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    slept: list[float] = []
    notifier = make(f"http://127.0.0.1:{closed_port}", tmp_path, slept)
    result = notifier.send("order A-5 paid")
    assert (result.outcome, result.attempts) == ("failed", 4)
    assert result.error is not None and result.error.startswith("ConnectError: ")
    assert slept == [1.0, 2.0, 4.0]
    [letter] = notifier.dead_letters.letters()
    assert (letter.target, letter.payload, letter.error, letter.attempts) == (
        "telegram",
        {"chat_id": "42", "text": "order A-5 paid"},
        result.error,
        4,
    )
    notifier.close()


def test_breaker_opens_refuses_without_calling_then_half_opens_and_closes(
    stub: TelegramStub, tmp_path: Path, otel_capture: TelemetryCapture
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "tg-breaker", failure_threshold=2, recovery_timeout=30, success_threshold=2, clock=clock
    )
    slept: list[float] = []
    notifier = make(stub.url, tmp_path, slept, breaker=breaker)
    control(stub, "mode", {"mode": "error", "status": 503})

    first = notifier.send("first")
    assert (first.outcome, first.attempts, slept) == ("failed", 2, [1.0])  # opened: no further retry
    assert breaker.state is BreakerState.OPEN
    second = notifier.send("second")
    assert (second.outcome, second.attempts) == ("failed", 0)
    assert second.error is not None and second.error.startswith(
        "CircuitOpenError: circuit breaker 'tg-breaker' is open"
    )
    assert len(received(stub)["attempts"]) == 2  # the open breaker kept the second call off the wire

    control(stub, "reset")
    clock.now += 30  # the next call is a trial, and its span shows the breaker half-opening
    assert notifier.send("third").outcome == "sent"
    assert breaker.state is BreakerState.HALF_OPEN
    assert notifier.send("fourth").outcome == "sent"
    assert breaker.state is BreakerState.CLOSED
    assert [m["text"] for m in received(stub)["messages"]] == ["third", "fourth"]
    changes = [
        dict(e.attributes or {})["circuit_breaker.to"]
        for s in send_spans(otel_capture)
        for e in s.events
        if e.name == "circuit_breaker.state_change"
    ]
    assert changes == ["open", "half_open", "closed"]
    assert [letter.payload["text"] for letter in notifier.dead_letters.letters()] == ["first", "second"]
    notifier.close()


def test_replay_delivers_exactly_the_dead_letters(
    stub: TelegramStub, tmp_path: Path, otel_capture: TelemetryCapture
) -> None:
    notifier = make(stub.url, tmp_path, [], retry=RetryPolicy(max_retries=0))
    control(stub, "mode", {"mode": "error"})
    with business_context(orderId="R-1"):
        notifier.send("lost one")
    with business_context(orderId="R-2"):
        notifier.send("lost two")
    control(stub, "reset")
    assert notifier.send("not lost").outcome == "sent"
    otel_capture.clear()

    assert notifier.replay_dead_letters() == (2, 0)
    assert [m["text"] for m in received(stub)["messages"]] == ["not lost", "lost one", "lost two"]
    assert notifier.dead_letters.letters() == []
    assert [dict(s.attributes or {}).get("orderId") for s in send_spans(otel_capture)] == ["R-1", "R-2"]
    assert notifier.replay_dead_letters() == (0, 0)
    notifier.close()


def test_replay_keeps_what_still_fails(stub: TelegramStub, tmp_path: Path) -> None:
    notifier = make(stub.url, tmp_path, [], retry=RetryPolicy(max_retries=0))
    control(stub, "mode", {"mode": "error"})
    notifier.send("still failing")
    assert notifier.replay_dead_letters() == (0, 1)
    assert [letter.payload["text"] for letter in notifier.dead_letters.letters()] == ["still failing"]
    notifier.close()


def test_bad_request_is_not_retried_and_does_not_trip_the_breaker(stub: TelegramStub, tmp_path: Path) -> None:
    slept: list[float] = []
    breaker = CircuitBreaker("tg-400", failure_threshold=1)
    notifier = make(stub.url, tmp_path, slept, breaker=breaker)
    result = notifier.send("")  # Telegram: "message text is empty"
    assert (result.outcome, result.attempts, slept) == ("failed", 1, [])
    assert result.error == (
        "TelegramRejected: Telegram answered HTTP 400: Bad Request: message text is empty. "
        "Check the bot token and the chat id; retrying will not help."
    )
    assert breaker.state is BreakerState.CLOSED
    wrong_token = make(stub.url, tmp_path, slept, token="999:wrong", breaker=breaker)
    assert wrong_token.send("x").error == (
        "TelegramRejected: Telegram answered HTTP 401: Unauthorized. "
        "Check the bot token and the chat id; retrying will not help."
    )
    notifier.close()
    wrong_token.close()


def test_submit_returns_at_once_and_the_worker_keeps_business_keys(
    stub: TelegramStub, tmp_path: Path, otel_capture: TelemetryCapture
) -> None:
    control(stub, "mode", {"mode": "slow", "delay": 2})
    notifier = make(stub.url, tmp_path, [], timeout=5)  # well above the stub's 2 s: one attempt
    started = time.monotonic()
    with business_context(orderId="F-1", requestId="req-f"):
        assert notifier.submit("fire and forget") is True
    assert time.monotonic() - started < 1.0  # the send itself takes the stub's 2 s
    assert notifier.flush(timeout=5) is True
    assert received(stub)["messages"] == [{"chat_id": "42", "text": "fire and forget", "message_id": 1}]
    [span] = send_spans(otel_capture)
    assert (dict(span.attributes or {})["orderId"], dict(span.attributes or {})["requestId"]) == (
        "F-1",
        "req-f",
    )
    notifier.close()


def test_full_queue_dead_letters_instead_of_blocking(stub: TelegramStub, tmp_path: Path) -> None:
    control(stub, "mode", {"mode": "slow", "delay": 1.5})  # under the notifier's 2 s timeout
    notifier = make(stub.url, tmp_path, [], queue_size=1)
    assert notifier.submit("one") is True
    deadline = time.monotonic() + 5
    while not received(stub)["attempts"] and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker is now busy with "one"
    assert notifier.submit("two") is True
    assert notifier.submit("three") is False
    # "one" is still in flight: submit answered without waiting for room in the queue
    assert received(stub)["messages"] == []
    assert [(letter.payload["text"], letter.error) for letter in notifier.dead_letters.letters()] == [
        ("three", "notification queue full (1 waiting); not sent")
    ]
    assert notifier.flush(timeout=5)
    assert [m["text"] for m in received(stub)["messages"]] == ["one", "two"]
    notifier.close()


def test_async_send_honours_retry_after_without_blocking(stub: TelegramStub, tmp_path: Path) -> None:
    control(stub, "mode", {"mode": "rate_limit", "retry_after": 2, "times": 1})
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    notifier = make(stub.url, tmp_path, [], async_sleep=record_sleep)
    result = asyncio.run(notifier.send_async("async hello"))
    assert (result.outcome, result.attempts, slept) == ("sent", 2, [2.0])
    control(stub, "mode", {"mode": "error"})
    failed = asyncio.run(notifier.send_async("async lost"))
    assert failed.outcome == "failed"
    assert [letter.payload["text"] for letter in notifier.dead_letters.letters()] == ["async lost"]
    notifier.close()


def test_feature_flag_off_sends_nothing(
    stub: TelegramStub, tmp_path: Path, otel_capture: TelemetryCapture
) -> None:
    notifier = make(stub.url, tmp_path, [], enabled=False)
    assert notifier.send("quiet").outcome == "disabled"
    assert notifier.submit("quiet") is True
    assert received(stub) == {"messages": [], "attempts": []}
    assert points(otel_capture) == []
    notifier.close()


def test_configuration_from_the_environment(
    stub: TelegramStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_TELEGRAM_ENABLED", "true")
    with pytest.raises(
        ValueError, match="enabled but there is no bot token: set OTEL_CORRELATE_TELEGRAM_BOT_TOKEN_FILE"
    ):
        TelegramNotifier()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("OTEL_CORRELATE_TELEGRAM_BOT_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("OTEL_CORRELATE_TELEGRAM_API_URL", stub.url + "/")
    monkeypatch.setenv("OTEL_CORRELATE_TELEGRAM_CHAT_ID", "777")
    monkeypatch.setenv("OTEL_CORRELATE_DEAD_LETTER_FILE", str(tmp_path / "env.jsonl"))
    notifier = TelegramNotifier(breaker=CircuitBreaker("tg-env"))
    assert notifier.send("from env").outcome == "sent"
    assert received(stub)["messages"] == [{"chat_id": "777", "text": "from env", "message_id": 1}]
    assert notifier.dead_letters.path == tmp_path / "env.jsonl"
    monkeypatch.setenv("OTEL_CORRELATE_TELEGRAM_BOT_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"TOKEN_FILE='.*missing' cannot be read"):
        TelegramNotifier()
    notifier.close()


def test_success_window_is_one_rolling_hour(stub: TelegramStub, tmp_path: Path) -> None:
    clock = FakeClock()
    window = SuccessWindow(clock=clock)
    window.add(False)
    clock.now += 1800
    window.add(True)
    window.add(True)
    window.add(False)
    assert (window.counts(), window.rate()) == ((2, 2), 0.5)
    clock.now += 1800
    assert (window.counts(), window.rate()) == ((2, 1), 2 / 3)
    clock.now += 3600
    assert (window.counts(), window.rate()) == ((0, 0), None)
    notifier = make(stub.url, tmp_path, [], clock=clock)
    notifier.send("counted")
    summary = notification_summary()
    assert summary["windowSeconds"] == 3600
    assert summary["channels"]["telegram"]["sent"] >= 1
    notifier.close()


def test_retry_after_is_read_from_telegram_body_then_header() -> None:
    body = {"ok": False, "parameters": {"retry_after": 7}}
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "3"}), body) == 7.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "3"}), {"ok": False}) == 3.0
    future = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    assert (retry_after_seconds(future) or 0) > 10**9
    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Response(500)) is None
