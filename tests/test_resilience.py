"""Circuit breaker transitions and timing on a fake clock; retry delays on a recording sleep."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from opentelemetry import trace

from otel_correlate._capture import TelemetryCapture
from otel_correlate._resilience import (
    BreakerOptions,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    circuit_breakers,
)
from otel_correlate._retry import RetryableError, RetryPolicy, retry_call, retry_call_async

tracer = trace.get_tracer("tests")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom("dependency down")


def fail_times(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            breaker.call(fail)


def transitions(capture: TelemetryCapture, name: str) -> list[dict[str, Any]]:
    return [
        {
            "body": r.log_record.body,
            "severity": r.log_record.severity_text,
            **{k: v for k, v in (r.log_record.attributes or {}).items() if not k.startswith("code.")},
        }
        for r in capture.logs()
        if (r.log_record.attributes or {}).get("breaker") == name
    ]


def state_points(capture: TelemetryCapture, name: str) -> list[float]:
    return [
        p.value
        for p in capture.metrics()
        if p.name == "circuit_breaker.state" and p.attributes == {"breaker": name}
    ]


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BreakerOptions() == BreakerOptions(
        failure_threshold=10, recovery_timeout=120.0, success_threshold=3
    )
    monkeypatch.setenv("OTEL_CORRELATE_BREAKER_FAILURE_THRESHOLD", "4")
    monkeypatch.setenv("OTEL_CORRELATE_BREAKER_RECOVERY_TIMEOUT", "30")
    breaker = CircuitBreaker("env-breaker", success_threshold=1)
    assert breaker.options == BreakerOptions(failure_threshold=4, recovery_timeout=30.0, success_threshold=1)


def test_invalid_options_say_what_to_use() -> None:
    with pytest.raises(ValueError, match=r"failure_threshold=0 is not valid: use an integer of at least 1"):
        BreakerOptions(failure_threshold=0)
    with pytest.raises(ValueError, match=r"recovery_timeout=-1 is not valid"):
        CircuitBreaker("bad", recovery_timeout=-1)


def test_closed_breaker_opens_after_threshold_consecutive_failures(otel_capture: TelemetryCapture) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("cb-open", failure_threshold=3, clock=clock)
    fail_times(breaker, 2)
    breaker.call(lambda: None)  # a success resets the count
    fail_times(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    with tracer.start_as_current_span("caller") as span:
        fail_times(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert transitions(otel_capture, "cb-open") == [
        {
            "body": "circuit breaker cb-open changed from closed to open",
            "severity": "WARN",
            "breaker": "cb-open",
            "from_state": "closed",
            "to_state": "open",
        }
    ]
    [finished] = [s for s in otel_capture.spans() if s.name == "caller"]
    assert [(e.name, dict(e.attributes or {})) for e in finished.events] == [
        (
            "circuit_breaker.state_change",
            {
                "circuit_breaker.name": "cb-open",
                "circuit_breaker.from": "closed",
                "circuit_breaker.to": "open",
            },
        )
    ]
    assert span.get_span_context().is_valid
    points = [
        (p.name, p.unit, p.attributes, p.value)
        for p in otel_capture.metrics()
        if p.name.startswith("circuit_breaker.") and p.attributes.get("breaker") == "cb-open"
    ]
    assert sorted(points) == [
        ("circuit_breaker.state", "{state}", {"breaker": "cb-open"}, 2),
        ("circuit_breaker.transitions", "{transition}", {"breaker": "cb-open", "state": "open"}, 1),
    ]


def test_open_breaker_refuses_calls_without_calling_until_the_timeout() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("cb-refuse", failure_threshold=1, recovery_timeout=120, clock=clock)
    fail_times(breaker, 1)
    called: list[int] = []
    clock.advance(100)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: called.append(1))
    assert called == []
    assert refused.value.breaker == "cb-refuse"
    assert refused.value.retry_in == pytest.approx(20.0)
    assert "refused for another 20.0 s" in str(refused.value)
    clock.advance(19.999)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.001)
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_closes_after_success_threshold_trials(otel_capture: TelemetryCapture) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "cb-close", failure_threshold=1, recovery_timeout=10, success_threshold=3, clock=clock
    )
    fail_times(breaker, 1)
    clock.advance(10)
    breaker.call(lambda: None)
    breaker.call(lambda: None)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.call(lambda: None)
    assert breaker.state is BreakerState.CLOSED
    assert [
        (t["from_state"], t["to_state"], t["severity"]) for t in transitions(otel_capture, "cb-close")
    ] == [
        ("closed", "open", "WARN"),
        ("open", "half_open", "INFO"),
        ("half_open", "closed", "INFO"),
    ]
    snapshot = breaker.snapshot().to_json()
    assert snapshot == {
        "name": "cb-close",
        "state": "closed",
        "consecutiveFailures": 0,
        "trialSuccesses": 0,
        "retryInSeconds": 0.0,
        "failureThreshold": 1,
        "recoveryTimeoutSeconds": 10,
        "successThreshold": 3,
    }
    assert state_points(otel_capture, "cb-close") == [0]  # the last value of the gauge


def test_half_open_failure_reopens_and_restarts_the_timer(otel_capture: TelemetryCapture) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "cb-reopen", failure_threshold=2, recovery_timeout=60, success_threshold=2, clock=clock
    )
    fail_times(breaker, 2)
    clock.advance(60)
    breaker.call(lambda: None)  # one good trial is not enough
    fail_times(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot().retry_in == pytest.approx(60.0)
    clock.advance(59)
    assert breaker.state is BreakerState.OPEN
    clock.advance(1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert [t["to_state"] for t in transitions(otel_capture, "cb-reopen")] == [
        "open",
        "half_open",
        "open",
        "half_open",
    ]
    assert state_points(otel_capture, "cb-reopen") == [1]


def test_half_open_admits_only_success_threshold_trials_at_once() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "cb-slots", failure_threshold=1, recovery_timeout=5, success_threshold=2, clock=clock
    )
    fail_times(breaker, 1)
    clock.advance(5)
    first, second = breaker.admit(), breaker.admit()
    with pytest.raises(CircuitOpenError) as refused:
        breaker.admit()
    assert refused.value.retry_in == 0.0
    breaker.record(first, asyncio.CancelledError())  # a cancelled trial frees its slot, counts nothing
    third = breaker.admit()
    breaker.record(second)
    breaker.record(third)
    assert breaker.state is BreakerState.CLOSED


def test_outcomes_of_calls_admitted_before_a_transition_are_ignored() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "cb-stale", failure_threshold=1, recovery_timeout=5, success_threshold=1, clock=clock
    )
    slow = breaker.admit()
    fail_times(breaker, 1)
    clock.advance(5)
    breaker.record(slow)  # a success from before the breaker opened proves nothing
    assert breaker.state is BreakerState.HALF_OPEN


def test_ignored_exceptions_pass_through_and_count_as_success() -> None:
    breaker = CircuitBreaker("cb-ignore", failure_threshold=2, ignore=(KeyError,))
    fail_times(breaker, 1)
    with pytest.raises(KeyError):
        breaker.call(lambda: {}["missing"])
    fail_times(breaker, 1)
    assert breaker.snapshot().consecutive_failures == 1
    assert breaker.state is BreakerState.CLOSED


def test_decorator_and_context_managers_sync_and_async() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("cb-forms", failure_threshold=4, clock=clock)

    @breaker
    def sync_fail() -> None:
        raise Boom("sync")

    @breaker
    async def async_fail() -> None:
        raise Boom("async")

    @breaker
    async def async_ok() -> str:
        return "fine"

    async def run() -> None:
        assert await async_ok() == "fine"
        with pytest.raises(Boom):
            await async_fail()
        with pytest.raises(Boom):
            async with breaker:
                raise Boom("async with")

    asyncio.run(run())
    with pytest.raises(Boom):
        sync_fail()
    assert breaker.snapshot().consecutive_failures == 3
    with pytest.raises(Boom), breaker:
        raise Boom("with")
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError), breaker:
        pytest.fail("the body must not run while the breaker is open")
    assert sync_fail.__name__ == "sync_fail"
    assert breaker in circuit_breakers()


def test_concurrent_failures_open_the_breaker_exactly_once(otel_capture: TelemetryCapture) -> None:
    breaker = CircuitBreaker("cb-threads", failure_threshold=50)
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(25):
            try:
                breaker.call(fail)
            except (Boom, CircuitOpenError):
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert breaker.state is BreakerState.OPEN
    assert [t["to_state"] for t in transitions(otel_capture, "cb-threads")] == ["open"]


# --- retry -----------------------------------------------------------------------


def test_retry_policy_defaults_are_1_2_4_seconds_and_three_retries() -> None:
    policy = RetryPolicy()
    assert policy == RetryPolicy(max_retries=3, base_delay=1.0, max_delay=60.0, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, None]
    assert RetryPolicy(jitter=True).delay(3, rand=lambda: 0.25) == 1.0
    assert policy.delay(1, retry_after=7) == 7
    assert policy.delay(3, retry_after=2) == 4.0
    assert policy.delay(1, retry_after=61) is None
    with pytest.raises(ValueError, match=r"max_retries=-1 is not valid"):
        RetryPolicy(max_retries=-1)


def test_retry_waits_1_2_4_then_raises_the_last_error(otel_capture: TelemetryCapture) -> None:
    slept: list[float] = []
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        raise RetryableError(f"attempt {len(calls)} failed")

    with tracer.start_as_current_span("send"), pytest.raises(RetryableError, match="attempt 4 failed"):
        retry_call(flaky, sleep=slept.append)
    assert slept == [1.0, 2.0, 4.0]
    [span] = [s for s in otel_capture.spans() if s.name == "send"]
    assert [dict(e.attributes or {}) for e in span.events] == [
        {
            "retry.attempt": 1,
            "retry.outcome": "retry",
            "error.type": "RetryableError",
            "error.message": "attempt 1 failed",
            "retry.delay_s": 1.0,
        },
        {
            "retry.attempt": 2,
            "retry.outcome": "retry",
            "error.type": "RetryableError",
            "error.message": "attempt 2 failed",
            "retry.delay_s": 2.0,
        },
        {
            "retry.attempt": 3,
            "retry.outcome": "retry",
            "error.type": "RetryableError",
            "error.message": "attempt 3 failed",
            "retry.delay_s": 4.0,
        },
        {
            "retry.attempt": 4,
            "retry.outcome": "give_up",
            "error.type": "RetryableError",
            "error.message": "attempt 4 failed",
        },
    ]


def test_retry_honours_retry_after_and_succeeds(otel_capture: TelemetryCapture) -> None:
    slept: list[float] = []
    answers: list[Exception | None] = [RetryableError("429", retry_after=5), ConnectionError("reset"), None]

    def call() -> str:
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return "delivered"

    with tracer.start_as_current_span("send"):
        assert retry_call(call, sleep=slept.append) == "delivered"
    assert slept == [5, 2.0]
    [span] = [s for s in otel_capture.spans() if s.name == "send"]
    assert dict(span.events[0].attributes or {}) == {
        "retry.attempt": 1,
        "retry.outcome": "retry",
        "error.type": "RetryableError",
        "error.message": "429",
        "retry.delay_s": 5,
        "retry.retry_after_s": 5,
    }
    assert dict(span.events[-1].attributes or {}) == {"retry.attempt": 3, "retry.outcome": "success"}


def test_errors_not_listed_are_not_retried() -> None:
    slept: list[float] = []
    with pytest.raises(ValueError, match="bad request"):
        retry_call(lambda: (_ for _ in ()).throw(ValueError("bad request")), sleep=slept.append)
    assert slept == []


def test_retry_stops_at_once_when_the_breaker_opens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("cb-retry", failure_threshold=2, recovery_timeout=30, clock=clock)
    slept: list[float] = []
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise RetryableError("503")

    with pytest.raises(RetryableError):
        retry_call(down, breaker=breaker, sleep=slept.append)
    assert (len(calls), slept) == (2, [1.0])  # the second failure opened the breaker: no wait, no third try
    with pytest.raises(CircuitOpenError):
        retry_call(down, breaker=breaker, sleep=slept.append)
    assert (len(calls), slept) == (2, [1.0])


def test_async_retry_awaits_the_injected_sleep() -> None:
    slept: list[float] = []
    answers: list[Exception | None] = [TimeoutError("slow"), RetryableError("429", retry_after=3), None]

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def call() -> str:
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return "ok"

    attempts: list[int] = []
    result = asyncio.run(
        retry_call_async(call, sleep=fake_sleep, on_attempt=lambda a: attempts.append(a.number))
    )
    assert (result, slept, attempts) == ("ok", [1.0, 3], [1, 2, 3])
