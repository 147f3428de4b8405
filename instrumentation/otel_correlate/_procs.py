"""Real processes on loopback: the demo, the stack launcher and the tests start them here.

Every process started by :func:`running` is stopped when its context exits, and
its output goes to a log file whose tail is shown when it fails to come up.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository, for examples/ and configs
BIN = Path(sys.executable).parent


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, and not handed out before by this process.

    The kernel may give the same ephemeral port to two binds in a row once the
    first socket is closed, so callers asking for a server's several ports at
    once (Tempo's HTTP, gRPC and OTLP ports) could get one port twice.
    """
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no loopback port free that was not handed out already; free some ports and retry")


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str) -> None:
    """Poll ``predicate`` until it holds, or fail after ``timeout`` seconds saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def instrumented_env(otlp_endpoint: str, **extra: str) -> dict[str, str]:
    """Environment for a service exporting to ``otlp_endpoint`` quickly (short batch delays)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@contextmanager
def running(
    argv: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    ready_timeout: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv``, wait until ``port`` accepts connections, stop it on exit."""
    log = log_path.open("wb")
    proc = subprocess.Popen(list(argv), cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + ready_timeout
        while not _port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{argv[0]} did not come up on port {port}:\n{tail}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log.close()


def instrument_cmd(service: str, *argv: str) -> list[str]:
    """``opentelemetry-instrument --service_name <service> <argv...>`` from this venv."""
    instrument = BIN / "opentelemetry-instrument"
    if not instrument.exists():  # pragma: no cover - a broken environment
        found = shutil.which("opentelemetry-instrument")
        raise RuntimeError(f"opentelemetry-instrument not found next to {sys.executable} (PATH has {found})")
    return [str(instrument), "--service_name", service, *argv]


def uvicorn_cmd(app: str, port: int, *extra: str) -> list[str]:
    """uvicorn serving ``app`` on 127.0.0.1:``port``."""
    return [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *extra]


def gunicorn_cmd(app: str, port: int, *extra: str) -> list[str]:
    """gunicorn serving ``app`` on 127.0.0.1:``port`` with 4 threads per worker."""
    return [
        str(BIN / "gunicorn"),
        "-b",
        f"127.0.0.1:{port}",
        "--threads",
        "4",
        "--no-control-socket",
        *extra,
        app,
    ]
