"""In-process cost of one request: the reference app called directly, without a server or a load generator.

The server benchmark (``run.py``) measures what users see, but its CPU per request
moves 5-10 % between runs on a 2-core machine. Calling the same app through its
ASGI/WSGI entry point in a loop removes the server, the sockets and the load
generator, so a change of a few microseconds shows. Start it the way the service
starts: plain for the uninstrumented baseline, under ``opentelemetry-instrument``
for otel-correlate (its environment variables switch signals off to split the cost)::

    .venv/bin/python benchmarks/inprocess.py --framework fastapi
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\
        .venv/bin/opentelemetry-instrument python benchmarks/inprocess.py --framework fastapi
    OTEL_SDK_DISABLED=true .venv/bin/opentelemetry-instrument python benchmarks/inprocess.py

It prints one JSON object: process CPU per request (all threads, including the
export threads' work for these requests: the pipeline is flushed before the clock
stops), each thread's share (at the kernel's 10 ms tick, so only meaningful over
thousands of requests), and the garbage collector's collections and time per
generation. Compare configurations run one after another, several times.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "apps"))

PATH = "/orders/ORD-1a2b3c4d"


def _asgi_loop(requests: int, sent: Callable[[], None] | None = None) -> None:
    """``requests`` requests to the FastAPI app; ``sent()`` is called as each response's last body part goes out."""
    from fastapi_app import app

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"the reference endpoint answered {message['status']}")
        if sent is not None and message["type"] == "http.response.body" and not message.get("more_body"):
            sent()  # the client has the whole response now; the request's telemetry ends after this

    async def run() -> None:
        for _ in range(requests):
            await app(dict(scope, state={}), receive, send)

    asyncio.run(run())


def _wsgi_loop(requests: int, sent: Callable[[], None] | None = None) -> None:
    """``requests`` requests to the Flask app; ``sent()`` is called when each body is sent, before it is closed."""
    from flask_app import app

    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": PATH,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        # a server, which closes the body once sent (the loop below does): as under gunicorn,
        # the request's telemetry ends at that close, not as the app returns
        "SERVER_SOFTWARE": "inprocess",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "5555",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"the reference endpoint answered {status}")

    for _ in range(requests):
        body = app(dict(environ, **{"wsgi.input": io.BytesIO(b"")}), start_response)
        for _chunk in body:
            pass
        if sent is not None:
            sent()  # the client has the whole response now; the server closes the body after this
        getattr(body, "close", lambda: None)()


def _flush(*, metrics_too: bool = True) -> None:
    """Export what the requests produced, so the export threads' work is inside the measurement.

    ``metrics_too=False`` leaves the metrics to their own export interval (only spans and logs).
    """
    from opentelemetry import _logs, metrics, trace

    providers = [trace.get_tracer_provider(), _logs.get_logger_provider()]
    if metrics_too:
        providers.append(metrics.get_meter_provider())
    for provider in providers:
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()


def _thread_cpu() -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    cpu: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[thread.name] = (int(fields[11]) + int(fields[12])) / ticks
    return cpu


def _pin(cpu: int) -> None:
    """Every thread of this process on one CPU, as the server benchmark pins the server.

    Unpinned, this loop shows a GIL convoy a server does not have: the loop never
    blocks, its one write per request (the console line) releases the GIL, and a
    waiting export thread is woken each time and loses the race, thousands of times
    a second (about 40 µs per request here, and 5-10 % noise). A server blocks in
    epoll between requests, which lets the export threads run; pinned, the loop
    behaves the same way and repeats to a few µs.
    """
    for task in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(task), {cpu})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=("fastapi", "flask"), default="fastapi")
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--cpu", type=int, default=0, help="the CPU every thread runs on (-1: unpinned)")
    args = parser.parse_args(argv)
    if args.cpu >= 0:
        _pin(args.cpu)
    loop = _asgi_loop if args.framework == "fastapi" else _wsgi_loop

    loop(args.warmup)
    _flush()
    started: dict[int, float] = {}
    spent = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        generation = info["generation"]
        if phase == "start":
            started[generation] = time.perf_counter()
        else:
            spent[generation][0] += 1
            spent[generation][1] += time.perf_counter() - started.pop(generation, time.perf_counter())

    gc.callbacks.append(on_gc)
    threads_before = _thread_cpu()
    cpu = time.process_time()
    loop(args.requests)
    _flush()
    cpu = time.process_time() - cpu
    gc.callbacks.remove(on_gc)
    result = {
        "framework": args.framework,
        "requests": args.requests,
        "instrumented": "opentelemetry.sdk.trace" in sys.modules,
        "cpu_us_per_request": round(cpu / args.requests * 1e6, 1),
        "gc_per_generation": {
            str(g): {"collections": n, "us_per_request": round(t / args.requests * 1e6, 2)}
            for g, (n, t) in spent.items()
        },
        "thread_cpu_us_per_request": {
            name: round((spent_s - threads_before.get(name, 0.0)) / args.requests * 1e6, 1)
            for name, spent_s in _thread_cpu().items()
        },
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
