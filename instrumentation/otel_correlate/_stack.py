"""``otel-correlate stack up | down | status | logs``: the native stack on loopback.

Starts Tempo, Loki, Prometheus, Alertmanager and our collector with the same
config files docker-compose.otel.yml mounts (``collector/``, ``stack/``), keeps
their data, logs and pid files under one state directory
(``OTEL_CORRELATE_STATE_DIR``), waits until each answers ready and prints the
endpoints. ``up`` is idempotent: engines already running from the same state
directory are left alone.

Example:
    $ otel-correlate stack up
    $ otel-correlate stack status
    $ otel-correlate stack down
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from otel_correlate import _settings
from otel_correlate._procs import ROOT, port_taken


class StackError(RuntimeError):
    """The stack cannot start or stop; the message says what to do."""


@dataclass(frozen=True)
class Engine:
    """One process of the stack.

    Attributes:
        name: Short name used in status lines, pid and log files.
        ports: Loopback TCP ports it listens on at offset 0 (checked free before start);
            the first one answers HTTP.
        ready_path: Path on the first port that answers 200 once the engine is ready.
        label: What ``up`` prints before the endpoint.
    """

    name: str
    ports: tuple[int, ...]
    ready_path: str
    label: str

    @property
    def url(self) -> str:
        """Base URL of the engine's HTTP port, with ``OTEL_CORRELATE_PORT_OFFSET`` applied."""
        return f"http://127.0.0.1:{self.ports[0] + port_offset()}"

    @property
    def ready_url(self) -> str:
        """Answers 200 once the engine is ready."""
        return self.url + self.ready_path

    def live_ports(self) -> list[int]:
        """The ports this engine listens on, offset applied."""
        return [port + port_offset() for port in self.ports]

    def config_source(self) -> Path:
        """The repository config file this engine runs with (Alertmanager runs a rendered copy of it)."""
        return {
            "tempo": ROOT / "stack" / "tempo" / "tempo.yaml",
            "loki": ROOT / "stack" / "loki" / "loki.yaml",
            "prometheus": ROOT / "stack" / "prometheus" / "prometheus.yml",
            "alertmanager": ROOT / "stack" / "alertmanager" / "alertmanager.yml",
            "collector": ROOT / "collector" / "config.yaml",
        }[self.name]

    def argv(self, state: Path, binaries: dict[str, Path]) -> list[str]:
        """The command line that starts this engine."""
        config = self.config_source()
        if self.name == "tempo":
            return [
                str(binaries["tempo"]),
                f"-config.file={config}",
                "-config.expand-env=true",
            ]
        if self.name == "loki":
            return [
                str(binaries["loki"]),
                f"-config.file={config}",
                "-config.expand-env=true",
            ]
        if self.name == "prometheus":
            return [
                _system_binary("prometheus"),
                f"--config.file={render_prometheus_config(state)}",
                f"--storage.tsdb.path={state / 'prometheus'}",
                # Metrics retention (docs/operations.md); compose passes the same flag.
                "--storage.tsdb.retention.time=30d",
                f"--web.listen-address=127.0.0.1:{9090 + port_offset()}",
                "--web.enable-remote-write-receiver",
                "--enable-feature=exemplar-storage",
                "--web.enable-lifecycle",
                # POST /api/v1/admin/tsdb/snapshot for `otel-correlate backup`; loopback only here.
                "--web.enable-admin-api",
                "--log.level=warn",
            ]
        if self.name == "alertmanager":
            return [
                _system_binary("prometheus-alertmanager"),
                f"--config.file={render_alertmanager_config(state)}",
                f"--storage.path={state / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{9093 + port_offset()}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ]
        if self.name == "collector":
            return [str(binaries["otelcol-correlate"]), f"--config={config}"]
        raise StackError(f"unknown engine {self.name!r}")  # pragma: no cover


#: Start order: the backends first, the collector (which sends to them) last.
ENGINES: tuple[Engine, ...] = (
    Engine("tempo", (3200, 9097, 4417, 4418), "/ready", "Tempo"),
    Engine("loki", (3100, 9096), "/ready", "Loki"),
    Engine("prometheus", (9090,), "/-/ready", "Prometheus"),
    Engine("alertmanager", (9093,), "/-/ready", "Alertmanager"),
    Engine("collector", (13133, 4317, 4318, 8888, 1777), "/", "Collector health"),
)
#: Stop order: each engine before the ones it sends to, so that its last writes still land
#: (Tempo's metrics generator remote-writes its last samples to Prometheus as it stops; Loki's
#: ruler and Prometheus send alerts to Alertmanager). tests/test_stack_launcher.py reads who
#: sends to whom from the config files.
STOP_ORDER: tuple[str, ...] = ("collector", "tempo", "loki", "prometheus", "alertmanager")
#: The collector's OTLP/HTTP endpoint of a stack at offset 0.
OTLP_ENDPOINT = "http://127.0.0.1:4318"


def port_offset() -> int:
    """``OTEL_CORRELATE_PORT_OFFSET``: added to every port, so a second stack can run beside the first."""
    return _settings.PORT_OFFSET.get()


def endpoints() -> dict[str, str]:
    """Base URLs of the stack with the current offset: ``otlp``, ``tempo``, ``loki``, ``prometheus``, ``alertmanager``."""
    urls = {engine.name: engine.url for engine in ENGINES if engine.name != "collector"}
    urls["otlp"] = f"http://127.0.0.1:{4318 + port_offset()}"
    return urls


def _system_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(
            f"{name} is not installed. Install Debian's package "
            f"({'prometheus-alertmanager' if 'alertmanager' in name else 'prometheus'}) "
            "or run ./run setup, which does it."
        )
    return path


TELEGRAM_TOKEN_PLACEHOLDER = "RENDERED_FROM_SECRETS_telegram_bot_token"


def render_alertmanager_config(state: Path) -> Path:
    """A private copy of the Alertmanager config with the Telegram bot token filled in.

    Loopback webhook ports (the recovery service) move with ``OTEL_CORRELATE_PORT_OFFSET``.
    Alertmanager 0.25 (Debian bookworm) has no ``bot_token_file``, so the token is
    read from ``$OTEL_CORRELATE_SECRETS_DIR/telegram_bot_token`` and written into a
    copy only the owner can read. Without the file the placeholder stays and
    Telegram notifications fail (and are counted by Alertmanager); every other
    receiver works.
    """
    source = ROOT / "stack" / "alertmanager" / "alertmanager.yml"
    target = state / "alertmanager" / "alertmanager.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = source.read_text()
    offset = port_offset()
    text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{int(m.group(1)) + offset}", text)
    token_file = Path(_settings.SECRETS_DIR.get()) / "telegram_bot_token"
    if token_file.is_file():
        text = text.replace(TELEGRAM_TOKEN_PLACEHOLDER, token_file.read_text().strip())
    target.touch(mode=0o600, exist_ok=True)
    target.chmod(0o600)
    target.write_text(text)
    return target


def render_prometheus_config(state: Path) -> Path:
    """Prometheus' config and scrape targets, copied into the state directory with ports offset.

    Prometheus 2.42 does not expand environment variables, so the launcher writes
    the copy: target ports get ``OTEL_CORRELATE_PORT_OFFSET`` added and rule files
    point at the repository's ``alerts/``.
    """
    source = ROOT / "stack" / "prometheus"
    target = state / "prometheus-config"
    (target / "targets").mkdir(parents=True, exist_ok=True)
    offset = port_offset()

    def shift(match: re.Match[str]) -> str:
        return f"127.0.0.1:{int(match.group(1)) + offset}"

    for targets in sorted((source / "targets").glob("*.yml")):
        text = re.sub(r"127\.0\.0\.1:(\d+)", shift, targets.read_text())
        (target / "targets" / targets.name).write_text(text)
    config = (source / "prometheus.yml").read_text().replace("../../alerts/", f"{ROOT / 'alerts'}/")
    (target / "prometheus.yml").write_text(config)
    return target / "prometheus.yml"


def state_dir() -> Path:
    """The stack's state directory (``OTEL_CORRELATE_STATE_DIR``), absolute."""
    return Path(os.path.expanduser(_settings.STATE_DIR.get())).resolve()


def _pid_file(state: Path, engine: Engine) -> Path:
    return state / "pids" / f"{engine.name}.pid"


def _log_file(state: Path, engine: Engine) -> Path:
    return state / "logs" / f"{engine.name}.log"


def _running_pid(state: Path, engine: Engine) -> int | None:
    try:
        pid = int(_pid_file(state, engine).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # pragma: no cover - someone else's process reused the pid
        return None
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists() and stat.read_text().split()[2] == "Z":
        return None
    return pid


def _is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _engine_env(state: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["OTEL_CORRELATE_STATE_DIR"] = str(state)
    o = port_offset()
    env.update(
        {
            "OTEL_CORRELATE_OTLP_GRPC_PORT": str(4317 + o),
            "OTEL_CORRELATE_OTLP_HTTP_PORT": str(4318 + o),
            "OTEL_CORRELATE_HEALTH_PORT": str(13133 + o),
            "OTEL_CORRELATE_TELEMETRY_PORT": str(8888 + o),
            "OTEL_CORRELATE_PPROF_ENDPOINT": f"127.0.0.1:{1777 + o}",
            "OTEL_CORRELATE_TEMPO_OTLP": f"127.0.0.1:{4417 + o}",
            "OTEL_CORRELATE_LOKI_OTLP": f"http://127.0.0.1:{3100 + o}/otlp",
            "OTEL_CORRELATE_PROM_WRITE": f"http://127.0.0.1:{9090 + o}/api/v1/write",
            "OTEL_CORRELATE_ALERTMANAGER_URL": f"http://127.0.0.1:{9093 + o}",
            "OTEL_CORRELATE_LOKI_PORT": str(3100 + o),
            "OTEL_CORRELATE_LOKI_GRPC_PORT": str(9096 + o),
            "OTEL_CORRELATE_TEMPO_PORT": str(3200 + o),
            "OTEL_CORRELATE_TEMPO_GRPC_PORT": str(9097 + o),
            "OTEL_CORRELATE_TEMPO_OTLP_GRPC": str(4417 + o),
            "OTEL_CORRELATE_TEMPO_OTLP_HTTP": str(4418 + o),
        }
    )
    env.setdefault("OTEL_CORRELATE_LOKI_RULES_DIR", str(ROOT / "alerts" / "loki"))
    # The engines are Go programs: keep the machine usable while they start.
    env.setdefault("GOMAXPROCS", "2")
    return env


def up(*, progress: Callable[[str], None] = print, names: Sequence[str] | None = None) -> None:
    """Build what is missing, start every engine not yet running, wait until all are ready.

    Raises:
        StackError: A port is taken by another program, a binary is missing, or an
            engine exited or did not get ready in time; the message says which and
            shows the end of its log.
    """
    from otel_correlate import _build

    state = state_dir()
    engines = [e for e in ENGINES if names is None or e.name in names]
    for sub in ("pids", "logs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    to_start = [e for e in engines if _running_pid(state, e) is None]
    for engine in to_start:
        taken = [port for port in engine.live_ports() if port_taken(port)]
        if taken:
            raise StackError(
                f"{engine.name} cannot start: port {', '.join(map(str, taken))} on 127.0.0.1 is taken by another "
                f"program (not a stack started from {state}). Stop it (`ss -ltnp | grep :{taken[0]}` shows which), "
                "or run `otel-correlate stack down` if it is an older stack of this state directory."
            )
    needed = {"tempo": "tempo", "loki": "loki", "collector": "otelcol-correlate"}
    build = sorted({needed[e.name] for e in to_start if e.name in needed})
    binaries = _build.ensure_binaries(build, progress=progress) if build else {}
    env = _engine_env(state)
    for engine in to_start:
        argv = engine.argv(state, binaries)
        log_path = _log_file(state, engine)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _pid_file(state, engine).write_text(f"{proc.pid}\n")
        progress(f"[stack] started {engine.name} (pid {proc.pid})")
    for engine in engines:
        _wait_ready(state, engine, progress)
    progress("[stack] ready:")
    for engine in engines:
        progress(f"  {engine.label:<17} {engine.url}")
    progress(f"  {'OTLP (HTTP)':<17} {endpoints()['otlp']}")
    progress(f"  state and logs: {state}")


def _wait_ready(state: Path, engine: Engine, progress: Callable[[str], None]) -> None:
    timeout = _settings.STACK_READY_TIMEOUT.get()
    started = time.monotonic()
    last_note = started
    while not _is_ready(engine.ready_url):
        now = time.monotonic()
        if _running_pid(state, engine) is None:
            raise StackError(
                f"{engine.name} exited while starting; the end of {_log_file(state, engine)}:\n"
                f"{_tail(_log_file(state, engine))}"
            )
        if now - started > timeout:
            raise StackError(
                f"{engine.name} did not answer ready at {engine.ready_url} within {timeout:.0f}s "
                f"(OTEL_CORRELATE_STACK_READY_TIMEOUT); the end of its log:\n{_tail(_log_file(state, engine))}"
            )
        if now - last_note >= 5:
            progress(f"[stack] waiting for {engine.name} to get ready ({now - started:.0f}s)")
            last_note = now
        time.sleep(0.25)


def down(*, progress: Callable[[str], None] = print, names: Sequence[str] | None = None) -> None:
    """Stop every engine this state directory started, each before the engines it sends to (``STOP_ORDER``)."""
    state = state_dir()
    for engine in sorted(ENGINES, key=_stop_rank):
        if names is not None and engine.name not in names:
            continue
        pid = _running_pid(state, engine)
        if pid is None:
            _pid_file(state, engine).unlink(missing_ok=True)
            continue
        os.kill(pid, signal.SIGTERM)
        started = time.monotonic()
        settled_at: float | None = None
        while _running_pid(state, engine) is not None and time.monotonic() < started + 30:
            time.sleep(0.2)
            if settled_at is None and engine.name == "tempo" and tempo_write_path_stopped(engine.url):
                settled_at = time.monotonic()
            if settled_at is not None and time.monotonic() > settled_at + TEMPO_EXIT_GRACE_S:
                break
        if _running_pid(state, engine) is not None:
            with contextlib.suppress(ProcessLookupError):  # it may exit by itself just now
                os.kill(pid, signal.SIGKILL)
            if settled_at is not None:
                progress(
                    f"[stack] {engine.name}: its write path stopped (ingester, distributor, metrics "
                    "generator, compactor), its query frontend did not (a Tempo shutdown bug, "
                    "grafana/tempo#7967); killed"
                )
            else:
                progress(f"[stack] {engine.name} did not stop in 30s; killed")
        _reap(pid)
        _pid_file(state, engine).unlink(missing_ok=True)
        progress(f"[stack] stopped {engine.name}")


#: Tempo's modules that hold or send data; once all have terminated, a stop loses nothing more.
TEMPO_WRITE_PATH = ("distributor", "ingester", "metrics-generator", "compactor")
#: How long Tempo may take to exit by itself once its write path has stopped.
TEMPO_EXIT_GRACE_S = 2.0


def tempo_services(table: str) -> dict[str, str]:
    """Tempo's ``/status/services`` table (``| name | State | failure |`` rows) as name to state."""
    states = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] and not cells[0].startswith(("+", "-", "SERVICE")):
            states[cells[0]] = cells[1]
    return states


def tempo_write_path_stopped(base_url: str) -> bool:
    """Whether a stopping Tempo's write path has terminated (its ``/status/services``; False if unknown).

    Tempo stops its query frontend after its write path, and with queries in its
    recent past that stop deadlocks (the frontend's queue waits for a cleanup loop
    that has already stopped: grafana/tempo#7967), so SIGTERM ends with the 30 s
    kill. Once the modules that hold or send data have terminated, nothing is lost
    by killing it.
    """
    try:
        with urllib.request.urlopen(base_url + "/status/services", timeout=1) as response:
            table = response.read().decode("utf-8", "replace")
    except Exception:  # refused, cut off mid-answer (http.client.IncompleteRead) as Tempo exits: unknown
        return False
    states = tempo_services(table)
    return all(states.get(name) == "Terminated" for name in TEMPO_WRITE_PATH)


def _stop_rank(engine: Engine) -> int:
    return STOP_ORDER.index(engine.name) if engine.name in STOP_ORDER else -1


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def status() -> dict[str, str]:
    """``running (pid N), ready`` / ``running, not ready`` / ``stopped`` for each engine."""
    state = state_dir()
    result = {}
    for engine in ENGINES:
        pid = _running_pid(state, engine)
        if pid is None:
            result[engine.name] = "stopped"
        else:
            ready = "ready" if _is_ready(engine.ready_url) else "not ready"
            result[engine.name] = f"running (pid {pid}), {ready}"
    return result


def add_cli(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``stack up|down|status|logs`` to the ``otel-correlate`` command."""
    stack = commands.add_parser(
        "stack", help="run the native stack: collector, Prometheus, Loki, Tempo, Alertmanager"
    )
    actions = stack.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("up", help="build what is missing, start everything, wait until ready").set_defaults(
        handler=_cmd_up
    )
    actions.add_parser("down", help="stop everything this state directory started").set_defaults(
        handler=_cmd_down
    )
    actions.add_parser("status", help="which engines run and answer ready").set_defaults(handler=_cmd_status)
    logs = actions.add_parser("logs", help="the end of each engine's log")
    logs.add_argument("engine", nargs="?", choices=[e.name for e in ENGINES])
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.set_defaults(handler=_cmd_logs)


def _cmd_up(_args: argparse.Namespace) -> int:
    up()
    return 0


def _cmd_down(_args: argparse.Namespace) -> int:
    down()
    return 0


def _cmd_status(_args: argparse.Namespace) -> int:
    states = status()
    for name, line in states.items():
        print(f"{name:<13} {line}")
    return 0 if all(line.endswith(", ready") for line in states.values()) else 3


def _cmd_logs(args: argparse.Namespace) -> int:
    state = state_dir()
    for engine in ENGINES:
        if args.engine in (None, engine.name):
            print(f"==> {_log_file(state, engine)} <==")
            print(_tail(_log_file(state, engine), args.lines))
    return 0
