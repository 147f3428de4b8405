"""Process-level behaviour: forking servers, a missing collector, a missing service name."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from otel_correlate._procs import (
    free_port,
    gunicorn_cmd,
    instrument_cmd,
    instrumented_env,
    running,
    uvicorn_cmd,
    wait_until,
)
from otel_correlate._receiver import MetricPointData, OTLPReceiver

pytestmark = pytest.mark.e2e

SERVERS = {
    "gunicorn": lambda port: gunicorn_cmd(
        "examples.orders.app:app", port, "-w", "2", "-k", "uvicorn.workers.UvicornWorker"
    ),
    "uvicorn": lambda port: uvicorn_cmd("examples.orders.app:app", port, "--workers", "2"),
}


def _hit(url: str, count: int) -> None:
    def one(i: int) -> int:
        with httpx.Client() as client:  # a new connection each time, so both workers get some
            return client.get(url, headers={"X-Request-ID": f"w-{i}"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(count))) == {404}


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_each_of_two_workers_exports_its_own_telemetry(server: str, tmp_path: Path) -> None:
    port = free_port()
    with (
        OTLPReceiver() as receiver,
        running(
            instrument_cmd("orders", *SERVERS[server](port)),
            port=port,
            env=instrumented_env(receiver.endpoint),
            log_path=tmp_path / "server.log",
        ),
    ):
        sent = 0

        def instances() -> set[str]:
            return {
                s.resource["service.instance.id"] for s in receiver.spans if s.attributes.get("http.route")
            }

        for _ in range(10):  # connections spread over the workers; stop once both served some
            _hit(f"http://127.0.0.1:{port}/orders/ORD-none", 40)
            sent += 40
            try:
                wait_until(lambda: len(instances()) >= 2, timeout=3, what="spans from two workers")
                break
            except TimeoutError:
                continue
        wait_until(
            lambda: sum(1 for s in receiver.spans if s.attributes.get("http.route")) >= sent,
            timeout=20,
            what=f"{sent} server spans",
        )
        server_spans = [s for s in receiver.spans if s.attributes.get("http.route")]
        assert len(server_spans) == sent  # every request traced once: no dead exporter thread, no duplicate
        assert len(instances()) == 2

        def counts_by_instance() -> dict[str, int]:
            latest: dict[str, int] = {}
            for point in receiver.metrics:
                if (
                    point.name == "http.server.request.duration"
                    and point.attributes.get("http.response.status_code") == 404
                ):
                    latest[point.resource["service.instance.id"]] = point.count
            return latest

        # cumulative histograms per worker: their counts add up to the requests sent, none collided
        wait_until(
            lambda: sum(counts_by_instance().values()) == sent, timeout=20, what="per-worker request counts"
        )
        assert set(counts_by_instance()) == instances()


def test_no_collector_listening_the_service_keeps_answering_and_logs_sparingly(tmp_path: Path) -> None:
    port, dead = free_port(), free_port()
    log = tmp_path / "orders.log"
    with running(
        instrument_cmd("orders", *uvicorn_cmd("examples.orders.app:app", port)),
        port=port,
        env=instrumented_env(
            f"http://127.0.0.1:{dead}",
            OTEL_EXPORTER_OTLP_TIMEOUT="1",
            OTEL_CORRELATE_EXPORT_ERROR_INTERVAL="3600",
        ),
        log_path=log,
    ) as proc:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            statuses = [
                client.post("/orders", json={"customer": f"c{i}", "amount": 1}).status_code
                for i in range(300)
            ]
            rss_early = _rss_kib(proc.pid)
            statuses += [
                client.post("/orders", json={"customer": f"c{i}", "amount": 1}).status_code
                for i in range(900)
            ]
            rss_late = _rss_kib(proc.pid)
    assert statuses == [201] * 1200
    # bounded: the queues drop what cannot be sent instead of growing with the request count
    assert rss_late - rss_early < 20 * 1024, (rss_early, rss_late)
    output = log.read_text()
    failures = [line for line in output.splitlines() if re.search(r"(?i)export|dropping|queue full", line)]
    kinds = {re.sub(r"\d+", "N", line.split(" ", 2)[2]) for line in failures}  # without the time stamp
    # each kind of failure is logged once in the interval; the rest are counted, not printed
    assert len(failures) == len(kinds), failures
    assert len(failures) <= 8, failures


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_missing_service_name_warns_once_at_start(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "anon.log"
    env = instrumented_env("http://127.0.0.1:9")
    instrument = instrument_cmd("x", *uvicorn_cmd("examples.orders.app:app", port))
    argv = [instrument[0], *instrument[3:]]  # without --service_name
    with running(argv, port=port, env=env, log_path=log):
        httpx.get(f"http://127.0.0.1:{port}/orders/none")
    warnings = [line for line in log.read_text().splitlines() if "no service name is set" in line]
    assert len(warnings) == 1
    assert "OTEL_SERVICE_NAME" in warnings[0] and "--service_name" in warnings[0]


_LATE_IMPORT_SCRIPT = """
import sys
import flask
unused = ("fastapi", "httpx", "pydantic", "starlette", "requests", "urllib3")
loaded_at_start = sorted(m for m in unused if m in sys.modules)
import httpx, requests  # imported after start-up: instrumented then
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
instrumented = [i().is_instrumented_by_opentelemetry for i in (HTTPXClientInstrumentor, RequestsInstrumentor)]
print(loaded_at_start, flask.Flask.__name__, instrumented)
"""


def test_a_flask_service_loads_no_fastapi_and_clients_are_traced_when_imported(tmp_path: Path) -> None:
    """Instrumentors of unused libraries cost no imports; a library imported later is still traced.

    The OTLP span exporter is on: it sends with http.client, so requests and urllib3 are
    loaded only by a service that uses them.
    """
    import subprocess

    env = instrumented_env("http://127.0.0.1:9", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    python = str(Path(instrument_cmd("x")[0]).parent / "python")
    done = subprocess.run(
        instrument_cmd("late-imports", python, "-c", _LATE_IMPORT_SCRIPT),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[] Flask [True, True]", done.stderr


def test_sigterm_exports_the_last_batch_before_the_process_ends(tmp_path: Path) -> None:
    """uvicorn ends with the default SIGTERM action (no atexit): the buffered telemetry must still leave."""
    port = free_port()
    with OTLPReceiver() as receiver:
        env = instrumented_env(
            receiver.endpoint,
            # nothing is exported on its own before the stop: all of it waits in the queues
            OTEL_BSP_SCHEDULE_DELAY="600000",
            OTEL_BLRP_SCHEDULE_DELAY="600000",
            OTEL_METRIC_EXPORT_INTERVAL="600000",
        )
        with running(
            instrument_cmd("orders", *uvicorn_cmd("examples.orders.app:app", port)),
            port=port,
            env=env,
            log_path=tmp_path / "orders.log",
        ) as proc:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                statuses = [client.get(f"/orders/ORD-gone-{i}").status_code for i in range(60)]
            assert statuses == [404] * 60
            assert not [s for s in receiver.spans if s.attributes.get("http.route")]
            proc.terminate()
            assert proc.wait(timeout=20) == -15  # it still ends the way SIGTERM ends it
        server_spans = [s for s in receiver.spans if s.attributes.get("http.route")]
        assert len(server_spans) == 60
        assert {s.attributes["orderId"] for s in server_spans} == {f"ORD-gone-{i}" for i in range(60)}
        logged = {r.attributes.get("orderId") for r in receiver.logs}
        assert {f"ORD-gone-{i}" for i in range(60)} <= logged
        [duration] = [
            p
            for p in receiver.metrics
            if p.name == "http.server.request.duration"
            and p.attributes.get("http.response.status_code") == 404
        ]
        assert duration.count == 60


@contextlib.contextmanager
def _flask_under_gunicorn(
    app: str, tmp_path: Path, **env: str
) -> Iterator[tuple[OTLPReceiver, httpx.Client]]:
    """``tests/<app>_app.py`` under gunicorn's threaded worker and ``opentelemetry-instrument``."""
    port = free_port()
    with (
        OTLPReceiver() as receiver,
        running(
            instrument_cmd(app, *gunicorn_cmd(f"tests.{app}_app:app", port, "-k", "gthread")),
            port=port,
            env={**instrumented_env(receiver.endpoint), **env},
            log_path=tmp_path / f"{app}.log",
        ),
        httpx.Client(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        yield receiver, client


def test_a_streamed_flask_response_under_gunicorn_keeps_its_trace_to_the_last_line(tmp_path: Path) -> None:
    """gunicorn iterates a generator body after the view returned: every line logged while
    streaming belongs to the request's trace and order, and the span and duration cover the stream."""
    from tests.stream_app import PAUSE_S

    with _flask_under_gunicorn("stream", tmp_path) as (receiver, client):
        bodies = [
            client.get(f"/orders/ORD-s{i}/lines", headers={"X-Request-ID": f"rs-{i}"}).text for i in range(2)
        ]
        assert bodies == [f"ORD-s{i},0\nORD-s{i},1\nORD-s{i},2\n" for i in range(2)]
        wait_until(
            lambda: len(receiver.logs) >= 6 and len(receiver.spans) >= 2, timeout=20, what="logs and spans"
        )
        spans = {s.attributes["orderId"]: s for s in receiver.spans if s.attributes.get("http.route")}
        assert sorted(spans) == ["ORD-s0", "ORD-s1"]
        lines = sorted(
            (r.attributes.get("orderId"), r.body, r.trace_id, r.span_id, r.attributes.get("requestId"))
            for r in receiver.logs
            if str(r.body).startswith("export line")
        )
        assert lines == [
            (
                f"ORD-s{i}",
                f"export line {n}",
                spans[f"ORD-s{i}"].trace_id,
                spans[f"ORD-s{i}"].span_id,
                f"rs-{i}",
            )
            for i in range(2)
            for n in range(3)
        ]

        def duration() -> MetricPointData | None:
            points = [p for p in receiver.metrics if p.name == "http.server.request.duration"]
            return points[-1] if points and points[-1].count == 2 else None

        wait_until(lambda: duration() is not None, timeout=30, what="the duration of both requests")
        point = duration()
        assert point is not None and point.value >= 2 * 2 * PAUSE_S  # the sum: both pauses of both streams


def test_a_flask_client_under_gunicorn_never_waits_for_the_requests_telemetry(tmp_path: Path) -> None:
    """The span ends, its processors run and the duration is recorded once gunicorn has sent
    the response: a span processor that takes seconds leaves the client's answer as quick as ever."""
    end_s = 2.0
    with _flask_under_gunicorn("slow_end", tmp_path, SLOW_END_S=str(end_s)) as (receiver, client):
        started = time.monotonic()
        response = client.get("/orders/ORD-q1", headers={"X-Request-ID": "rq-1"})
        elapsed = time.monotonic() - started
        assert (response.status_code, response.json(), response.headers["X-Request-ID"]) == (
            200,
            {"id": "ORD-q1"},
            "rq-1",
        )
        assert elapsed < end_s  # the span's end (end_s in a processor) came after the answer
        wait_until(
            lambda: receiver.spans and any(r.body == "order ORD-q1 looked up" for r in receiver.logs),
            timeout=20,
            what="the request's span and log line",
        )
        [span] = [s for s in receiver.spans if s.attributes.get("http.route")]
        assert {k: span.attributes[k] for k in ("orderId", "requestId", "test.slow_end")} == {
            "orderId": "ORD-q1",
            "requestId": "rq-1",
            "test.slow_end": end_s,  # the slow processor held this span up
        }
        [line] = [r for r in receiver.logs if r.body == "order ORD-q1 looked up"]
        assert (line.trace_id, line.span_id) == (span.trace_id, span.span_id)
