"""The overhead benchmark: otel-correlate against uninstrumented and the peers.

One command runs it all and writes ``benchmarks/results/latest.{md,json}``::

    python benchmarks/run.py                 # full: 12 turns x 4 s per configuration
    python benchmarks/run.py --quick         # a smoke run: 2 turns x 1 s, no peers
    python benchmarks/run.py --rounds 6 --duration 8 --frameworks fastapi

Every configuration serves the same reference endpoint (``apps/``) and exports to
the same collector (our build, ``nop`` exporters, ``collector.yaml``). All of a
framework's configurations serve at once, each on its own port; under load they
take turns (order rotated each round), at low load they take turns request by
request, so they share the machine's state. Medians over rounds are reported,
ratios and added latencies computed within each round first. Spans and log records
per request are counted apart, one server at a time. The servers are pinned to
CPU 0, wrk and the collector to CPU 1 (when there are two CPUs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APPS = HERE / "apps"
VENVS = HERE / ".venvs"
MAIN_BIN = ROOT / ".venv" / "bin"
COLLECTOR = (
    Path(os.environ.get("OTEL_CORRELATE_CACHE_DIR", Path.home() / ".cache" / "otel-correlate"))
    / "bin"
    / "otelcol-correlate"
)

PORT_OFFSETS = {"http": 318, "grpc": 317, "health": 133, "telemetry": 888, "app": 80}
PORTS = {name: 24000 + offset for name, offset in PORT_OFFSETS.items()}
#: The reference endpoint every configuration is loaded on.
ENDPOINT = "/orders/ORD-1a2b3c4d"
LOWLOAD_GAP_S = 0.002
#: The low-load phase in this many slices per pair, the pairs taking turns slice by slice.
LOWLOAD_SLICES = 5

#: Peer venvs: folder name -> pip requirements (OTel pins match pyproject.toml's).
PEER_VENVS: dict[str, list[str]] = {
    "otel": [
        "opentelemetry-distro==0.66b1",
        "opentelemetry-sdk==1.45.1",
        "opentelemetry-api==1.45.1",
        "opentelemetry-exporter-otlp==1.45.1",
        "opentelemetry-instrumentation-fastapi==0.66b1",
        "opentelemetry-instrumentation-flask==0.66b1",
    ],
    "logfire": ["logfire[fastapi,flask]"],
}
#: The frameworks, pinned to the versions the project's venv runs.
FRAMEWORK_PINS = [
    "fastapi==0.165.0",
    "starlette==1.10.0",
    "uvicorn==0.54.0",
    "flask==3.1.3",
    "gunicorn==27.0.1",
    "loguru==0.7.3",
]

CONFIGS = ("uninstrumented", "opentelemetry-distro", "logfire", "otel-correlate")
#: Not run by default: otel-correlate with a documented option that is not its default.
OPTIONAL_CONFIGS = ("otel-correlate-sampled",)
KNOWN_CONFIGS = CONFIGS + OPTIONAL_CONFIGS
#: ``otel-correlate-sampled``: root spans sampled by trace id at this ratio, children following their parent.
SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
FRAMEWORKS = ("fastapi", "flask")


@dataclass
class Options:
    rounds: int
    duration: float
    connections: int
    lowload_requests: int
    frameworks: list[str]
    configs: list[str]
    logbench_records: int
    collector_seconds: float
    out: Path
    down_loads: int = 4
    down_seconds: float = 10.0
    alone_seconds: float = 5.0
    logbench_rounds: int = 5


def _taskset(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def _otlp_env(service: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOGFIRE_"))}
    env.update(
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{PORTS['http']}",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        PYTHONPATH=str(APPS),
        PYTHONUNBUFFERED="1",
    )
    return env


def ref_checkout(ref: str) -> Path:
    """A detached worktree of ``ref`` under benchmarks/.venvs, to compare against a commit."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    path = VENVS / f"ref-{sha}"
    if not path.exists():
        VENVS.mkdir(exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True, capture_output=True
        )
    _build_native(path)
    return path


def _build_native(checkout: Path) -> None:
    """The ref's C encoder, compiled in place: the ref runs from its source tree, which holds no build.

    Without it an ``@ref`` that has the C encoder would be measured with its Python fallback.
    """
    source = checkout / "instrumentation" / "otel_correlate" / "_otlp_native.c"
    target = source.with_name(f"_otlp_native{sysconfig.get_config_var('EXT_SUFFIX')}")
    if not source.exists() or target.exists():
        return
    # The interpreter's own compiler and flags, as setuptools uses them for an install.
    command = shlex.split(sysconfig.get_config_var("LDSHARED") or "cc -shared")
    command += shlex.split(sysconfig.get_config_var("CFLAGS") or "-O2")
    command += shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC")
    command += ["-I", sysconfig.get_paths()["include"], str(source), "-o", str(target)]
    subprocess.run(command, check=True)


def _ref_env(config: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` with, for ``otel-correlate@<ref>``, that ref's package first on ``PYTHONPATH``."""
    if config.startswith("otel-correlate@"):
        package = ref_checkout(config.split("@", 1)[1]) / "instrumentation"
        env["PYTHONPATH"] = f"{package}{os.pathsep}{env['PYTHONPATH']}"
    return env


def server_command(framework: str, config: str, port: int | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start one configuration (on ``port``, default the app port).

    ``otel-correlate@<ref>`` runs otel-correlate as of a git ref: its package
    directory goes first on ``PYTHONPATH``, so the installed entry points import it.
    """
    port = str(PORTS["app"] if port is None else port)
    env = _ref_env(config, _otlp_env(f"bench-{framework}"))
    if config == "otel-correlate-sampled":
        env.update(SAMPLED)
    if config.startswith("otel-correlate@") or config == "otel-correlate-sampled":
        config = "otel-correlate"
    module = "fastapi_app:app" if framework == "fastapi" else "flask_app:app"
    if config == "logfire":
        module = "logfire_fastapi:app" if framework == "fastapi" else "logfire_flask:app"
    bindir = {
        "uninstrumented": MAIN_BIN,
        "otel-correlate": MAIN_BIN,
        "opentelemetry-distro": VENVS / "otel" / "bin",
        "logfire": VENVS / "logfire" / "bin",
    }[config]
    if framework == "fastapi":
        serve = [str(bindir / "uvicorn"), module, "--host", "127.0.0.1", "--port", port]
        serve += ["--no-access-log", "--log-level", "warning"]
    else:
        serve = [str(bindir / "gunicorn"), "-w", "1", "-k", "gthread", "--threads", "8"]
        serve += ["-b", f"127.0.0.1:{port}", "--log-level", "warning", module]
    if config in ("otel-correlate", "opentelemetry-distro"):
        serve = [str(bindir / "opentelemetry-instrument"), *serve]
    if config == "opentelemetry-distro":
        env.update(OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp", OTEL_LOGS_EXPORTER="otlp")
    return [*_taskset(0), *serve], env


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _tree_kb(pid: int, path: str, field: str) -> float:
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/{path}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
        stack.extend(_children(current))
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (threads included)."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        stack.extend(_children(current))
    return total / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> int:
    """On-CPU time of a process's and its descendants' threads in nanoseconds (``schedstat``).

    ``cpu_seconds`` counts in clock ticks (10 ms): over the low-load phase's thousand
    requests that is 10 µs per request, too coarse for what one request adds there.
    """
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    total += int((task / "schedstat").read_text().split()[0])
        stack.extend(_children(current))
    return total


def rss_mb(pid: int) -> float:
    """VmRSS of a process and all its descendants, in MiB (pages shared after fork count twice)."""
    return _tree_kb(pid, "status", "VmRSS:")


def pss_mb(pid: int) -> float:
    """Proportional set size of a process and its descendants, in MiB: shared pages split between them."""
    return _tree_kb(pid, "smaps_rollup", "Pss:")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p99 latency (ms) and errors from ``wrk --latency`` output."""
    result: dict[str, float] = {}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rps:
        raise RuntimeError(f"could not parse wrk output:\n{output}")
    result["rps"] = float(rps.group(1))
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.MULTILINE)
        if match:
            result[f"p{pct}_ms"] = _ms(match.group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*?(\d+) timeout", output)
    result["errors"] = float(bad.group(1)) if bad else 0.0
    result["timeouts"] = float(errors.group(1)) if errors else 0.0
    total = re.search(r"(\d+) requests in", output)
    result["requests"] = float(total.group(1)) if total else 0.0
    return result


def wrk(url: str, duration: float, connections: int) -> dict[str, float]:
    cmd = [*_taskset(1), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return parse_wrk(out)


class KeepAlive:
    """One keep-alive connection to a server that times a GET of the endpoint, in milliseconds."""

    def __init__(self, port: int) -> None:
        self._request = f"GET {ENDPOINT} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = self._sock.makefile("rb")

    def get(self) -> float:
        start = time.perf_counter()
        self._sock.sendall(self._request)
        status = self._reader.readline()
        length = 0
        while True:
            line = self._reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        self._reader.read(length)
        elapsed = (time.perf_counter() - start) * 1000
        if b" 200 " not in status:
            raise RuntimeError(f"the endpoint answered {status!r}")
        return elapsed

    def __enter__(self) -> KeepAlive:
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.close()
        self._sock.close()


def interleaved(
    clients: dict[str, KeepAlive], cycles: int, gap_s: float = LOWLOAD_GAP_S
) -> dict[str, list[float]]:
    """``cycles`` requests to each client, one client after another, ``gap_s`` apart; latencies in ms.

    The order of the clients rotates every cycle, so none always follows the client's own pause.
    """
    names = list(clients)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for cycle in range(cycles):
        shift = cycle % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(clients[name].get())
            time.sleep(gap_s)
    return samples


def _lowload_numbers(latencies: list[float], cpu_ns_spent: int) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "lowload_p50_ms": statistics.median(ordered),
        "lowload_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "lowload_cpu_us_per_request": cpu_ns_spent / 1000 / len(ordered),
        "lowload_requests": float(len(ordered)),
    }


def lowload(framework: str, opts: Options, log_dir: Path) -> dict[str, dict[str, float]]:
    """Single requests to idle servers: each configuration and uninstrumented taking turns.

    At low load the machine idles between requests, and how long it takes to wake
    changes by a factor of two within minutes (uninstrumented's median went from 400
    to 1,100 µs between rounds). Measured one configuration after another, that
    drift was most of the "added" latency. Here all configurations serve at the
    same time, each on its own port and idle between requests, and each in turn is
    paired with uninstrumented: one client sends the two a request each in turn,
    2 ms apart, so both see the same moments of the machine. Pairs, not all of them
    at once: every server taking part in the turns evicts the others' caches, which
    made a request colder than a service idling on its own machine (Flask's added
    p50 read +151 µs with four servers taking turns, +102 µs with two).

    The pairs take turns too, in :data:`LOWLOAD_SLICES` slices each, the order of the
    pairs rotated every slice: measured one whole pair after another, the pair that
    went first read 40-150 µs more in five of six runs of two identical builds (the
    machine still settling after the load phase). A configuration's added p50 is the
    median over its slices of its p50 minus uninstrumented's in the same slice, with
    the slices' lowest and highest beside it; its p50, p99 and CPU pool its slices.
    Uninstrumented's own numbers pool its pairs. CPU per request is each server's
    on-CPU time over its requests.

    Each ``otel-correlate@<ref>`` also takes turns with ``otel-correlate`` in a pair of
    their own (in the same rotation): a change to the package is read as the median over
    the slices of the two's p50 difference, without the noise of two baselines measured
    in different slices. Those requests are kept out of either's own numbers.
    """
    base = "uninstrumented" if "uninstrumented" in opts.configs else None
    others = [config for config in opts.configs if config != base]
    own = [(base, config) for config in others] if base is not None else [(c,) for c in others]
    current = "otel-correlate"
    versus = [(c, current) for c in others if c.startswith("otel-correlate@")] if current in others else []
    pairs = own + versus
    slices = max(1, min(LOWLOAD_SLICES, opts.lowload_requests))
    sizes = [opts.lowload_requests // slices + (n < opts.lowload_requests % slices) for n in range(slices)]
    warm = max(
        20, opts.lowload_requests // 10
    )  # the first slice's; a later slice's fresh connections take 20
    samples: dict[tuple[str, ...], dict[str, list[float]]] = {p: {c: [] for c in p} for p in pairs}
    cpu: dict[tuple[str, ...], dict[str, int]] = {p: dict.fromkeys(p, 0) for p in pairs}
    added: dict[str, list[float]] = {pair[-1]: [] for pair in own}
    head_to_head: dict[str, list[float]] = {earlier: [] for earlier, _ in versus}
    with contextlib.ExitStack() as stack:
        servers = side_by_side(stack, framework, opts.configs, log_dir, "-lowload")
        for number, size in enumerate(sizes):
            shift = number % len(pairs)
            for pair in pairs[shift:] + pairs[:shift]:
                # Connections of the pair's slice only: an idle keep-alive connection is closed
                # by the server after a few seconds (gunicorn: 2 s), longer than the other pairs take.
                with contextlib.ExitStack() as connections:
                    taking_turns = {c: connections.enter_context(KeepAlive(servers[c][2])) for c in pair}
                    interleaved(taking_turns, warm if number == 0 else 20)
                    cpu_before = {c: cpu_ns(servers[c][0].pid) for c in pair}
                    measured = interleaved(taking_turns, size)
                    for c in pair:
                        cpu[pair][c] += cpu_ns(servers[c][0].pid) - cpu_before[c]
                        samples[pair][c] += measured[c]
                if pair in versus:
                    earlier = pair[0]
                    head_to_head[earlier].append(
                        1000 * (statistics.median(measured[current]) - statistics.median(measured[earlier]))
                    )
                elif base is not None:
                    added[pair[-1]].append(
                        1000 * (statistics.median(measured[pair[-1]]) - statistics.median(measured[base]))
                    )
    results: dict[str, dict[str, float]] = {}
    base_samples: list[float] = []
    base_cpu = 0
    for pair in own:
        config = pair[-1]
        results[config] = _lowload_numbers(samples[pair][config], cpu[pair][config])
        if base is not None:
            paired = _lowload_numbers(samples[pair][base], cpu[pair][base])
            results[config]["added_lowload_p50_us"] = statistics.median(added[config])
            results[config]["added_lowload_p50_us_min"] = min(added[config])
            results[config]["added_lowload_p50_us_max"] = max(added[config])
            results[config]["added_lowload_cpu_us"] = (
                results[config]["lowload_cpu_us_per_request"] - paired["lowload_cpu_us_per_request"]
            )
            base_samples += samples[pair][base]
            base_cpu += cpu[pair][base]
    for earlier, differences in head_to_head.items():
        results[earlier].update(
            current_lowload_p50_us_minus_this=statistics.median(differences),
            current_lowload_p50_us_minus_this_min=min(differences),
            current_lowload_p50_us_minus_this_max=max(differences),
            current_lowload_lower_slices=float(sum(d < 0 for d in differences)),
            current_lowload_slices=float(len(differences)),
        )
    if base is not None and base_samples:
        results = {base: _lowload_numbers(base_samples, base_cpu), **results}
    print(
        f"low load {framework:8} "
        + " ".join(
            f"{c} {1000 * r['lowload_p50_ms']:.0f} us ({r['lowload_cpu_us_per_request']:.0f} us CPU"
            + (f", added {_lowload_added(r)})" if "added_lowload_p50_us" in r else ")")
            for c, r in results.items()
        ),
        file=sys.stderr,
        flush=True,
    )
    for earlier in head_to_head:
        print(
            f"low load {framework:8} {current} minus {earlier}, taking turns: "
            f"{results[earlier]['current_lowload_p50_us_minus_this']:+.0f} µs",
            file=sys.stderr,
            flush=True,
        )
    return results


@contextlib.contextmanager
def collector() -> Iterator[subprocess.Popen[bytes]]:
    """The benchmark collector, pinned to CPU 1, stopped on exit."""
    if not COLLECTOR.exists():
        raise SystemExit(f"collector binary {COLLECTOR} is missing: run `./run setup` first")
    env = dict(os.environ)
    env.update(
        BENCH_OTLP_HTTP_PORT=str(PORTS["http"]),
        BENCH_OTLP_GRPC_PORT=str(PORTS["grpc"]),
        BENCH_HEALTH_PORT=str(PORTS["health"]),
        BENCH_TELEMETRY_PORT=str(PORTS["telemetry"]),
    )
    cmd = [*_taskset(1), str(COLLECTOR), f"--config={HERE / 'collector.yaml'}"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _wait_http(f"http://127.0.0.1:{PORTS['health']}/")
        yield proc
    finally:
        _stop(proc)


def telemetry_url() -> str:
    return f"http://127.0.0.1:{PORTS['telemetry']}/metrics"


def ensure_peer_venv(name: str, *, build: bool) -> bool:
    """True when the peer's venv exists (building it first when ``build``)."""
    venv = VENVS / name
    stamp = venv / ".bench-installed"
    want = json.dumps(PEER_VENVS[name] + FRAMEWORK_PINS)
    if stamp.exists() and stamp.read_text() == want:
        return True
    if not build:
        return False
    print(f"==> building the {name} peer venv in {venv}", file=sys.stderr)
    VENVS.mkdir(exist_ok=True)
    (VENVS / ".gitignore").write_text("*\n!.gitignore\n")  # as committed: a first build leaves git clean
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *PEER_VENVS[name], *FRAMEWORK_PINS], check=True)
    stamp.write_text(want)
    return True


@contextlib.contextmanager
def serving(
    framework: str,
    config: str,
    log: Path | None,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """One configuration's server, answering at the yielded URL of the endpoint; stopped on exit.

    Its output goes to ``log`` (discarded when None); ``env`` overrides its environment;
    it listens on ``port`` (default: the app port).
    """
    port = PORTS["app"] if port is None else port
    cmd, environment = server_command(framework, config, port)
    environment.update(env or {})
    url = f"http://127.0.0.1:{port}{ENDPOINT}"
    output = log.open("wb") if log is not None else None
    sink = output if output is not None else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=environment, cwd=APPS, stdout=sink, stderr=sink, start_new_session=True)
    try:
        _wait_http(url)
        yield proc, url
    finally:
        _stop(proc)
        if output is not None:
            output.close()


def _log_name(framework: str, config: str, phase: str = "") -> str:
    return f"{framework}-{config.replace('@', '-at-')}{phase}.log"


def side_by_side(
    stack: contextlib.ExitStack, framework: str, configs: list[str], log_dir: Path, phase: str = ""
) -> dict[str, tuple[subprocess.Popen[bytes], str, int]]:
    """Every configuration's server at once, each on its own port, stopped when ``stack`` closes."""
    servers = {}
    for number, config in enumerate(configs, start=1):
        port = PORTS["app"] + number
        log = log_dir / _log_name(framework, config, phase)
        proc, url = stack.enter_context(serving(framework, config, log, port=port))
        servers[config] = (proc, url, port)
    return servers


def load_in_turns(
    framework: str, opts: Options, log_dir: Path
) -> tuple[dict[str, list[dict[str, float]]], dict[str, dict[str, float]]]:
    """Throughput, latency and CPU under load: every configuration serving at once, loaded in turns.

    Each configuration has its own server on its own port for the whole phase. wrk
    loads one at a time for ``duration`` seconds, the configurations taking turns
    (the order rotated every round), so the slices of a round lie seconds apart and
    share the machine's moment (restarting a server per run put tens of seconds
    between the runs a ratio compares). Returns each configuration's slices and its
    PSS growth from after the warm-up to after the last slice (the whole phase).
    Its PSS itself is read in :func:`alone`: servers running side by side split
    the pages of the libraries they share, so their PSS is lower than alone.
    """
    configs = opts.configs
    runs: dict[str, list[dict[str, float]]] = {config: [] for config in configs}
    memory: dict[str, dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        servers = side_by_side(stack, framework, configs, log_dir)
        pss_warm: dict[str, float] = {}
        for config, (proc, url, _port) in servers.items():
            wrk(url, 1, opts.connections)
            pss_warm[config] = pss_mb(proc.pid)
        for round_no in range(opts.rounds):
            shift = round_no % len(configs)
            for config in configs[shift:] + configs[:shift]:
                proc, url, _port = servers[config]
                cpu_before = cpu_seconds(proc.pid)
                result = wrk(url, opts.duration, opts.connections)
                # CPU per request: robust to other load on the machine, unlike req/s.
                result["cpu_us_per_request"] = (
                    1e6 * (cpu_seconds(proc.pid) - cpu_before) / max(result["requests"], 1)
                )
                runs[config].append(result)
                print(
                    f"round {round_no + 1}/{opts.rounds} {framework:8} {config:22} {result['rps']:8.0f} req/s "
                    f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms "
                    f"cpu {result['cpu_us_per_request']:.0f} us/req",
                    file=sys.stderr,
                    flush=True,
                )
        for config, (proc, _url, _port) in servers.items():
            memory[config] = {"pss_growth_mb": pss_mb(proc.pid) - pss_warm[config]}
    return runs, memory


def alone(framework: str, config: str, opts: Options, log_dir: Path) -> dict[str, float]:
    """One server alone, loaded, then stopped: its memory, and the spans and log records delivered.

    Memory: RSS and PSS after the load, as a service running by itself has them.
    Delivery: what the collector accepted per request, counted apart from the timed
    phase, where idle servers still export what their queues hold while another is
    loaded. Stopping the server flushes its queues.
    """
    from collector_stats import accepted

    spans_before = accepted(telemetry_url(), "spans")
    logs_before = accepted(telemetry_url(), "log_records")
    with serving(framework, config, log_dir / _log_name(framework, config, "-alone")) as (proc, url):
        load = wrk(url, opts.alone_seconds, opts.connections)
        memory = {"rss_mb": rss_mb(proc.pid), "pss_mb": pss_mb(proc.pid)}
    time.sleep(0.5)
    served = 1 + load["requests"]  # the readiness probe included
    return {
        **memory,
        "requests": served,
        "spans_per_request": (accepted(telemetry_url(), "spans") - spans_before) / max(served, 1),
        "logs_per_request": (accepted(telemetry_url(), "log_records") - logs_before) / max(served, 1),
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


#: Measured once per configuration (memory and delivery alone, growth in the timed phase, low load).
ONCE = (
    "rss_mb",
    "pss_mb",
    "pss_growth_mb",
    "spans_per_request",
    "logs_per_request",
    "lowload_p50_ms",
    "lowload_cpu_us_per_request",
    "added_lowload_p50_us",
    "added_lowload_p50_us_min",
    "added_lowload_p50_us_max",
    "added_lowload_cpu_us",
    "current_lowload_p50_us_minus_this",
    "current_lowload_p50_us_minus_this_min",
    "current_lowload_p50_us_minus_this_max",
    "current_lowload_lower_slices",
    "current_lowload_slices",
)
#: Those compared with uninstrumented's, and the name of the difference (low load comes paired).
ADDED = {"rss_mb": "added_rss_mb", "pss_mb": "added_pss_mb"}


def summarise(
    raw: dict[str, dict[str, list[dict[str, float]]]],
    once: dict[str, dict[str, dict[str, float]]] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Medians per framework and configuration; ratios and added latency per round first.

    ``once`` holds what is measured once per configuration (memory, delivery, low
    load; see ``ONCE``): it joins the rows as measured, memory with its difference
    from uninstrumented's (low load comes with its own, paired in :func:`lowload`).
    """
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for framework, by_config in raw.items():
        base_runs = by_config.get("uninstrumented", [])
        measured = (once or {}).get(framework, {})
        base_once = measured.get("uninstrumented")
        summary[framework] = {}
        for config, runs in by_config.items():
            row: dict[str, float] = {
                "rps": median([r["rps"] for r in runs]),
                "cpu_us_per_request": median([r["cpu_us_per_request"] for r in runs]),
                "p50_ms": median([r["p50_ms"] for r in runs]),
                "p99_ms": median([r["p99_ms"] for r in runs]),
                "errors": sum(r["errors"] + r["timeouts"] for r in runs),
                "rounds": len(runs),
            }
            row.update({key: value for key, value in measured.get(config, {}).items() if key in ONCE})
            if base_runs:
                pairs = list(zip(runs, base_runs, strict=False))
                row["throughput_ratio"] = median([r["rps"] / b["rps"] for r, b in pairs])
                row["cpu_ratio"] = median(
                    [b["cpu_us_per_request"] / r["cpu_us_per_request"] for r, b in pairs]
                )
                row["added_p50_ms"] = median([r["p50_ms"] - b["p50_ms"] for r, b in pairs])
                row["added_p99_ms"] = median([r["p99_ms"] - b["p99_ms"] for r, b in pairs])
            if base_once is not None and config != "uninstrumented":
                for key, added in ADDED.items():
                    if key in row and key in base_once:
                        row[added] = row[key] - base_once[key]
            current = by_config.get("otel-correlate", [])
            if config.startswith("otel-correlate@") and current:
                # The package under test against this earlier one, round by round: finer than the two
                # ratios, which each carry the uninstrumented baseline's noise as well.
                differences = [
                    c["cpu_us_per_request"] - r["cpu_us_per_request"]
                    for c, r in zip(current, runs, strict=False)
                ]
                row["current_cpu_us_minus_this"] = median(differences)
                row["current_cpu_us_minus_this_min"] = min(differences)
                row["current_cpu_us_minus_this_max"] = max(differences)
                row["current_cpu_lower_rounds"] = float(sum(d < 0 for d in differences))
            summary[framework][config] = row
    return summary


def _lowload_added(row: dict[str, float]) -> str:
    """The added p50 at low load, with its slices' range when measured in slices."""
    added = f"{row.get('added_lowload_p50_us', float('nan')):+.0f} µs"
    if "added_lowload_p50_us_min" in row:
        added += f" ({row['added_lowload_p50_us_min']:+.0f}..{row['added_lowload_p50_us_max']:+.0f})"
    return added


def markdown(result: dict[str, object]) -> str:
    nan = float("nan")
    meta = result["meta"]
    assert isinstance(meta, dict)
    lines = [
        "# otel-correlate overhead benchmark",
        "",
        f"{meta['when']} on {meta['machine']}. Under load: every configuration serving at once, "
        f"loaded in turns, {meta['rounds']} turns x {meta['duration_s']} s each, wrk -t1 -c{meta['connections']}; "
        "medians, ratios taken turn by turn; PSS growth over all turns. PSS, spans and logs per request: "
        "each server alone, loaded for a few seconds (spans and logs counted by the collector). "
        f"Low load: all configurations serving at once, {meta['lowload_requests']} requests to each, "
        "one at a time and 2 ms apart, each configuration taking turns request by request with "
        f"uninstrumented, in {meta.get('lowload_slices', 1)} slices per pair, the pairs taking turns slice "
        "by slice; added p50: the median of the slices' differences (in brackets their lowest and "
        "highest); its CPU is each server's on-CPU time over its requests.",
        "",
    ]
    summary = result["summary"]
    assert isinstance(summary, dict)
    for framework, rows in summary.items():
        server = "uvicorn, 1 worker" if framework == "fastapi" else "gunicorn, 1 worker x 8 threads"
        lines += [
            f"## {framework} ({server})",
            "",
            "| configuration | req/s | ratio | CPU µs/req | CPU ratio | added p50 (c8) | added p99 (c8) | added p50 low load | added CPU low load | PSS MB | +PSS MB | PSS growth in run MB | spans/req | logs/req |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for config, row in rows.items():
            if config == "uninstrumented":
                lines.append(
                    f"| {config} | {row['rps']:,.0f} | 1.00 | {row['cpu_us_per_request']:.0f} | 1.00 "
                    f"| ({row['p50_ms']:.2f} ms) | ({row['p99_ms']:.2f} ms) "
                    f"| ({1000 * row.get('lowload_p50_ms', nan):.0f} µs) "
                    f"| ({row.get('lowload_cpu_us_per_request', nan):.0f} µs) "
                    f"| {row.get('pss_mb', nan):.0f} | "
                    f"| {row.get('pss_growth_mb', nan):+.1f} | | |"
                )
                continue
            lines.append(
                f"| {config} | {row['rps']:,.0f} | {row.get('throughput_ratio', nan):.2f} "
                f"| {row['cpu_us_per_request']:.0f} | {row.get('cpu_ratio', nan):.2f} "
                f"| {row.get('added_p50_ms', nan):+.2f} ms | {row.get('added_p99_ms', nan):+.2f} ms "
                f"| {_lowload_added(row)} "
                f"| {row.get('added_lowload_cpu_us', nan):+.0f} µs | {row.get('pss_mb', nan):.0f} "
                f"| {row.get('added_pss_mb', nan):+.1f} | {row.get('pss_growth_mb', nan):+.1f} "
                f"| {row.get('spans_per_request', nan):.2f} "
                f"| {row.get('logs_per_request', nan):.2f} |"
            )
        lines.append("")
        for config, row in rows.items():
            if "current_cpu_us_minus_this" in row:
                lines += [
                    f"otel-correlate minus {config}, CPU per request round by round: median "
                    f"{row['current_cpu_us_minus_this']:+.0f} µs (range {row['current_cpu_us_minus_this_min']:+.0f} "
                    f"to {row['current_cpu_us_minus_this_max']:+.0f} µs; lower in "
                    f"{row['current_cpu_lower_rounds']:.0f} of {row['rounds']:.0f} rounds).",
                    "",
                ]
            if "current_lowload_p50_us_minus_this" in row:
                lines += [
                    f"otel-correlate minus {config}, p50 at low load, the two taking turns request by "
                    f"request: median {row['current_lowload_p50_us_minus_this']:+.0f} µs over the slices "
                    f"(range {row['current_lowload_p50_us_minus_this_min']:+.0f} to "
                    f"{row['current_lowload_p50_us_minus_this_max']:+.0f} µs; lower in "
                    f"{row['current_lowload_lower_slices']:.0f} of {row['current_lowload_slices']:.0f} slices).",
                    "",
                ]
    down = result.get("collector_down")
    if isinstance(down, dict) and down:
        lines += [
            "## Memory with the collector down (otel-correlate)",
            "",
            "The server exports to a port nothing listens on; its PSS once started and after each "
            f"{meta.get('down_seconds', meta['duration_s'])} s load (requests served so far; in brackets, more than uninstrumented's "
            "median PSS above):",
            "",
            "| framework | started | "
            + " | ".join(f"load {n}" for n in range(1, len(next(iter(down.values())))))
            + " |",
            "| --- |" + " ---: |" * len(next(iter(down.values()))),
        ]
        for framework, points in down.items():
            plain = summary.get(framework, {}).get("uninstrumented", {}).get("pss_mb")
            cells = " | ".join(
                f"{p['pss_mb']:.1f} MB"
                + (f" (+{p['pss_mb'] - plain:.1f})" if plain is not None else "")
                + f", {p['requests']:,.0f} req"
                for p in points
            )
            lines.append(f"| {framework} | {cells} |")
        lines.append("")
    logs = result.get("logbench")
    if isinstance(logs, dict) and logs:
        lines += [
            "## Log path (in process, otel-correlate pipeline to the collector)",
            "",
            "loguru records inside a span and a business_context, median of the rounds (range):",
            "",
            "| configuration | records/s exported | range | logged/s | accepted by the collector | dropped |",
            "| --- | ---: | --- | ---: | ---: | ---: |",
        ]
        for config, row in logs.items():
            lines.append(
                f"| {config} | **{row['exported_per_s']:,}** "
                f"| {row['exported_per_s_min']:,}-{row['exported_per_s_max']:,} | {row['logged_per_s']:,} "
                f"| {row['accepted_by_collector']:,} of {row['records']:,} | {row['dropped']:,} |"
            )
        lines.append("")
    coll = result.get("collector")
    if isinstance(coll, dict):
        lines += [
            "## Collector (our build, memory_limiter + batch + nop)",
            "",
            f"{coll['spans']:,} spans in batches of {coll['batch']}: **{coll['spans_per_cpu_s']:,} spans per "
            f"CPU-second**, peak RSS {coll['peak_rss_mb']} MB.",
            "",
        ]
    return "\n".join(lines)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound once to find it, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def collector_down(framework: str, opts: Options, log_dir: Path) -> list[dict[str, float]]:
    """otel-correlate's memory while its collector is unreachable: PSS after each of several loads.

    The server exports to a port nothing listens on, so every export fails and is
    retried, and the batch queues fill up (16,384 spans and log records each by default)
    and then drop what does not fit. Memory must level off once they are full instead
    of growing with the requests served.
    """
    dead = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    points: list[dict[str, float]] = []
    with serving(framework, "otel-correlate", log_dir / f"{framework}-collector-down.log", dead) as (
        proc,
        url,
    ):
        served = 1.0
        points.append({"requests": served, "pss_mb": pss_mb(proc.pid)})
        for _ in range(opts.down_loads):
            load = wrk(url, opts.down_seconds, opts.connections)
            served += load["requests"]
            points.append({"requests": served, "pss_mb": pss_mb(proc.pid), "rps": load["rps"]})
            print(
                f"collector down {framework:8} {served:8.0f} requests served, PSS {points[-1]['pss_mb']:.1f} MB",
                file=sys.stderr,
                flush=True,
            )
    return points


def log_path(opts: Options) -> dict[str, dict[str, object]]:
    """``logbench.py`` for every otel-correlate configuration, ``logbench_rounds`` times each, interleaved.

    One run is about a second of logging, and single runs on a 2-core machine spread
    about 5 %: the median of the rounds is reported with its range, and a
    ``otel-correlate@<ref>`` in the run is measured beside the current package.
    """
    configs = [c for c in opts.configs if c == "otel-correlate" or c.startswith("otel-correlate@")]
    runs: dict[str, list[dict[str, object]]] = {config: [] for config in configs}
    for round_no in range(opts.logbench_rounds):
        for config in configs:
            env = _ref_env(config, _otlp_env("bench-logs"))
            command = [*_taskset(0), str(MAIN_BIN / "python"), str(HERE / "logbench.py")]
            command += ["--records", str(opts.logbench_records), "--telemetry", telemetry_url()]
            run = _json_subprocess(command, env)
            runs[config].append(run)
            print(
                f"round {round_no + 1}/{opts.logbench_rounds} log path {config:22} {run}",
                file=sys.stderr,
                flush=True,
            )
    summary: dict[str, dict[str, object]] = {}
    for config, results in runs.items():
        exported = [float(r["exported_per_s"]) for r in results]  # type: ignore[arg-type]
        summary[config] = {
            "records": sum(int(r["records"]) for r in results),  # type: ignore[call-overload]
            "accepted_by_collector": sum(int(r["accepted_by_collector"]) for r in results),  # type: ignore[call-overload]
            "dropped": sum(int(r["dropped"]) for r in results),  # type: ignore[call-overload]
            "exported_per_s": round(median(exported)),
            "exported_per_s_min": round(min(exported)),
            "exported_per_s_max": round(max(exported)),
            "logged_per_s": round(median([float(r["logged_per_s"]) for r in results])),  # type: ignore[arg-type]
            "runs": results,
        }
    return summary


def _json_subprocess(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=HERE).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="turns of every configuration under load (12)"
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds of wrk load per turn (4)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--quick", action="store_true", help="2 turns x 1 s, no peers unless built, short extras"
    )
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument(
        "--configs",
        default=None,
        help=f"comma-separated, of {','.join(KNOWN_CONFIGS)} (default: the first "
        f"{len(CONFIGS)}); otel-correlate@<git ref> compares with a commit",
    )
    parser.add_argument("--no-build", action="store_true", help="skip peers whose venv is not built")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--port-base", type=int, default=24000, help="ports used: base+80 (app), +133, +317, +318, +888"
    )
    args = parser.parse_args(argv)
    PORTS.update({name: args.port_base + offset for name, offset in PORT_OFFSETS.items()})
    quick = args.quick
    configs = args.configs.split(",") if args.configs else list(CONFIGS)
    unknown = {c for c in configs if not c.startswith("otel-correlate@")} - set(KNOWN_CONFIGS)
    if unknown:
        parser.error(f"unknown configurations {sorted(unknown)}; choose from {', '.join(KNOWN_CONFIGS)}")
    build = not (args.no_build or quick)
    kept = []
    for config in configs:
        venv = {"opentelemetry-distro": "otel", "logfire": "logfire"}.get(config)
        if venv and not ensure_peer_venv(venv, build=build):
            print(
                f"==> skipping {config}: its venv is not built (run without --quick/--no-build)",
                file=sys.stderr,
            )
            continue
        kept.append(config)
    if "uninstrumented" not in kept:
        kept.insert(0, "uninstrumented")
    return Options(
        rounds=args.rounds or (2 if quick else 12),
        duration=args.duration or (1.0 if quick else 4.0),
        connections=args.connections,
        lowload_requests=100 if quick else 1000,
        frameworks=args.frameworks.split(","),
        configs=kept,
        logbench_records=5_000 if quick else 100_000,
        collector_seconds=1.0 if quick else 10.0,
        out=args.out,
        down_loads=2 if quick else 4,
        down_seconds=2.0 if quick else 10.0,
        alone_seconds=1.0 if quick else 5.0,
        logbench_rounds=1 if quick else 5,
    )


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop every process


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    signal.signal(signal.SIGTERM, _terminate)
    opts = parse_args(argv)
    opts.out.mkdir(parents=True, exist_ok=True)
    log_dir = opts.out / "logs"
    log_dir.mkdir(exist_ok=True)
    raw: dict[str, dict[str, list[dict[str, float]]]] = {}
    once: dict[str, dict[str, dict[str, float]]] = {}
    with collector() as coll:
        for framework in opts.frameworks:
            raw[framework], once[framework] = load_in_turns(framework, opts, log_dir)
        for framework in opts.frameworks:
            for config in opts.configs:
                by_itself = alone(framework, config, opts, log_dir)
                once[framework][config].update(by_itself)
                print(
                    f"alone {framework:8} {config:22} PSS {by_itself['pss_mb']:.1f} MB "
                    f"spans/req {by_itself['spans_per_request']:.2f} logs/req {by_itself['logs_per_request']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
        low = {fw: lowload(fw, opts, log_dir) for fw in opts.frameworks}
        for framework, by_config in low.items():
            for config, numbers in by_config.items():
                once[framework][config].update(numbers)
        down = (
            {fw: collector_down(fw, opts, log_dir) for fw in opts.frameworks}
            if "otel-correlate" in opts.configs
            else {}
        )
        logbench = log_path(opts)
        collector_result = _json_subprocess(
            [
                *_taskset(0),
                str(MAIN_BIN / "python"),
                str(HERE / "collectorbench.py"),
                "--port",
                str(PORTS["http"]),
                "--telemetry",
                telemetry_url(),
                "--pid",
                str(coll.pid),
                "--duration",
                str(opts.collector_seconds),
            ]
        )
        print(f"collector: {collector_result}", file=sys.stderr)
    result: dict[str, object] = {
        "meta": {
            "when": time.strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "rounds": opts.rounds,
            "duration_s": opts.duration,
            "down_seconds": opts.down_seconds,
            "connections": opts.connections,
            "lowload_requests": opts.lowload_requests,
            "lowload_slices": LOWLOAD_SLICES,
            "logbench_rounds": opts.logbench_rounds,
            "configs": opts.configs,
            "frameworks": opts.frameworks,
        },
        "summary": summarise(raw, once),
        "runs": raw,
        "once": once,
        "collector_down": down,
        "logbench": logbench,
        "collector": collector_result,
    }
    (opts.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (opts.out / "latest.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
