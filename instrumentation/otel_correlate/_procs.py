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
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository, for examples/ and configs
BIN = Path(sys.executable).parent


#: How many ports below the kernel's ephemeral range :func:`free_port` hands out from.
_POOL_SIZE = 4000
_HANDED_OUT: set[int] = set()
_LOCK = threading.Lock()
_CURSOR: dict[str, int] = {}  # the process it belongs to, and the next offset in the pool


def _new_lock_in_child() -> None:
    global _LOCK  # a fork while another thread held the lock would leave the child's copy held
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _pool() -> range:
    """The ports just below the kernel's ephemeral range (``ip_local_port_range``; 32768 if unreadable)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low = int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(max(1024, low - _POOL_SIZE), low)


def _probe_port() -> int:
    """The port the kernel gives a bind to port 0 on 127.0.0.1, released at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kernel_port() -> int:
    """A port the kernel gives a bind to port 0, not handed out before (it may give one twice in a row)."""
    for _ in range(100):
        port = _probe_port()
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(
        "the kernel gave only ports handed out already; stop the servers left running and retry"
    )


def port_taken(port: int) -> bool:
    """Whether a server could not listen on 127.0.0.1:``port`` now (as servers bind: ``SO_REUSEADDR``)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _start_offset(pid: int, size: int) -> int:
    """Where process ``pid`` starts in a pool of ``size`` ports: processes of nearby pids start far apart."""
    return (pid * 2654435761 % 2**32) % size  # Knuth's multiplicative hash


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, never handed out before by this process.

    The ports come from just below the kernel's ephemeral range, not from a bind to
    port 0: the kernel may give one ephemeral port to two binds in a row (Tempo's
    test once got one port for two of its listeners), and any bind to port 0 in
    between (a test's OTLP receiver, a server's own listener) could take the port
    before the server it was meant for has bound it. Each process starts at its own
    place in the pool, so two processes handing out ports at once rarely meet.
    """
    with _LOCK:
        pool = _pool()
        if len(pool) < _POOL_SIZE // 4:  # a kernel handing out nearly every port: ask it for one
            return _kernel_port()
        if _CURSOR.get("pid") != os.getpid():  # a new process, or a fork of one
            _CURSOR.update(pid=os.getpid(), next=_start_offset(os.getpid(), len(pool)))
        for _ in range(len(pool)):
            port = pool[_CURSOR["next"] % len(pool)]
            _CURSOR["next"] += 1
            if port not in _HANDED_OUT and not port_taken(port):
                _HANDED_OUT.add(port)
                return port
    raise RuntimeError(
        f"no port of 127.0.0.1:{pool.start}-{pool.stop - 1} is free and not handed out already; "
        "stop the servers left running and retry"
    )


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
