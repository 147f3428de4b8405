"""Start our collector build on free loopback ports, for the tests that need a real one.

Every port the shipped configs read from the environment gets a free one, so a
test collector never touches the stack's fixed ports (4317/4318/13133/8888/1777)
and several can run side by side. The process stops when the context exits.

Example:
    with running_collector([CONFIG], tmp_path=tmp_path) as collector:
        httpx.post(f"{collector.http_endpoint}/v1/traces", ...)
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from otel_correlate import _agent_build, _build
from otel_correlate._procs import ROOT, free_port, running, wait_until

CONFIG = ROOT / "collector" / "config.yaml"
AUTH = ROOT / "collector" / "auth.yaml"
GATEWAY = ROOT / "collector" / "gateway.yaml"
AGENT = ROOT / "collector" / "agent.yaml"


def collector_binary(name: str = "otelcol-correlate") -> Path:
    """One of our collector builds (built on first use; a few minutes the first time)."""
    if name == _agent_build.AGENT_NAME:
        return _agent_build.ensure_agent_binary()
    return _build.ensure_binaries([name])[name]


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A one-day certificate and key for 127.0.0.1 (PEM files in ``directory``), made with openssl."""
    cert, key = directory / "collector.crt", directory / "collector.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


@dataclass(frozen=True)
class CollectorPorts:
    """Free loopback ports for one collector, as the shipped configs' environment variables."""

    grpc: int
    http: int
    health: int
    telemetry: int
    pprof: int

    @classmethod
    def free(cls) -> CollectorPorts:
        return cls(free_port(), free_port(), free_port(), free_port(), free_port())

    def env(self) -> dict[str, str]:
        return {
            "OTEL_CORRELATE_OTLP_GRPC_PORT": str(self.grpc),
            "OTEL_CORRELATE_OTLP_HTTP_PORT": str(self.http),
            "OTEL_CORRELATE_HEALTH_PORT": str(self.health),
            "OTEL_CORRELATE_TELEMETRY_PORT": str(self.telemetry),
            "OTEL_CORRELATE_PPROF_ENDPOINT": f"127.0.0.1:{self.pprof}",
        }


@dataclass(frozen=True)
class RunningCollector:
    """A started collector: its process, ports and log."""

    process: subprocess.Popen[bytes]
    ports: CollectorPorts
    log_path: Path

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.health}/"

    def healthy(self) -> bool:
        """health_check answers 200 (every pipeline up)."""
        try:
            return httpx.get(self.health_url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def anon_rss_mib(self) -> float:
        """Anonymous resident memory (heap, stacks) of the process, from /proc.

        File-backed pages (the binary, the persistent queue's mmap) are left out: they
        are page cache the kernel can drop, not memory the process holds.
        """
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^RssAnon:\s+(\d+) kB", status, re.MULTILINE)
        assert match, status
        return int(match.group(1)) / 1024

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def collector_env(tmp_path: Path, ports: CollectorPorts, **extra: str) -> dict[str, str]:
    """The process environment: ours minus any OTEL_CORRELATE_* the caller's shell set, plus ports.

    Backends default to closed loopback ports, so a test collector never sends to
    the shared stack; pass ``OTEL_CORRELATE_TEMPO_OTLP`` etc. to point them somewhere.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_CORRELATE_")}
    env.update(
        {
            "OTEL_CORRELATE_STATE_DIR": str(tmp_path / "state"),
            "OTEL_CORRELATE_TEMPO_OTLP": f"127.0.0.1:{free_port()}",
            "OTEL_CORRELATE_LOKI_OTLP": f"http://127.0.0.1:{free_port()}/otlp",
            "OTEL_CORRELATE_PROM_WRITE": f"http://127.0.0.1:{free_port()}/api/v1/write",
        }
    )
    env.update(ports.env())
    env.update(extra)
    return env


@contextmanager
def running_collector(
    configs: Sequence[Path],
    *,
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    name: str = "collector",
    binary: str = "otelcol-correlate",
    ready_timeout: float = 60.0,
) -> Iterator[RunningCollector]:
    """Start the collector with ``--config`` for each of ``configs`` (merged in order); wait until healthy.

    Args:
        configs: Config files, later ones overriding earlier ones.
        tmp_path: Holds the state dir (unless ``env`` sets one) and ``<name>.log``.
        env: Extra environment (wins over the defaults of :func:`collector_env`).
        name: Log file name, to tell several collectors apart.
        binary: Which of our builds to run.
        ready_timeout: Seconds to wait for health_check to answer 200.
    """
    ports = CollectorPorts.free()
    full_env = collector_env(tmp_path / name, ports, **dict(env or {}))
    argv = [str(collector_binary(binary)), *(f"--config={c}" for c in configs)]
    log_path = tmp_path / f"{name}.log"
    with running(
        argv, port=ports.health, env=full_env, log_path=log_path, ready_timeout=ready_timeout
    ) as proc:
        collector = RunningCollector(proc, ports, log_path)
        try:
            wait_until(collector.healthy, timeout=ready_timeout, interval=0.2, what=f"{name} health_check")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- {name} log ---\n{collector.log_tail()}") from None
        yield collector
