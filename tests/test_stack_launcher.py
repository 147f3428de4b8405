"""The launcher's own behaviour, without starting engines: messages, idempotence, rendered secrets."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_correlate import _stack
from otel_correlate._procs import ROOT


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OTEL_CORRELATE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_a_taken_port_is_refused_with_what_to_do(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        engine = _stack.Engine("prometheus", (port,), "/-/ready", "Prometheus")
        monkeypatch.setattr(_stack, "ENGINES", (engine,))
        with pytest.raises(_stack.StackError) as raised:
            _stack.up(progress=lambda _line: None)
    message = str(raised.value)
    assert message.startswith(
        f"prometheus cannot start: port {port} on 127.0.0.1 is taken by another program"
    )
    assert "ss -ltnp" in message and "otel-correlate stack down" in message


def test_a_missing_debian_binary_says_which_package(monkeypatch: pytest.MonkeyPatch, state: Path) -> None:
    monkeypatch.setattr(_stack.shutil, "which", lambda _name: None)
    [alertmanager] = [e for e in _stack.ENGINES if e.name == "alertmanager"]
    with pytest.raises(_stack.StackError, match=r"prometheus-alertmanager is not installed.*\./run setup"):
        alertmanager.argv(state, {})


def test_status_of_a_fresh_state_directory_is_all_stopped(state: Path) -> None:
    assert _stack.status() == {e.name: "stopped" for e in _stack.ENGINES}


def test_a_stale_pid_file_counts_as_stopped(state: Path) -> None:
    (state / "pids").mkdir(parents=True)
    (state / "pids" / "loki.pid").write_text("999999999\n")
    assert _stack.status()["loki"] == "stopped"
    _stack.down(progress=lambda _line: None)
    assert not (state / "pids" / "loki.pid").exists()


def test_alertmanager_config_gets_the_telegram_token_from_the_secrets_dir(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "telegram_bot_token").write_text("123:abc\n")
    monkeypatch.setenv("OTEL_CORRELATE_SECRETS_DIR", str(secrets))
    rendered = _stack.render_alertmanager_config(state)
    text = rendered.read_text()
    assert "bot_token: 123:abc" in text
    assert _stack.TELEGRAM_TOKEN_PLACEHOLDER not in text
    assert rendered.stat().st_mode & 0o777 == 0o600
    source = (_stack.ROOT / "stack" / "alertmanager" / "alertmanager.yml").read_text()
    assert text == source.replace(_stack.TELEGRAM_TOKEN_PLACEHOLDER, "123:abc")


def test_without_a_token_file_the_placeholder_stays(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_SECRETS_DIR", str(tmp_path / "none"))
    assert _stack.TELEGRAM_TOKEN_PLACEHOLDER in _stack.render_alertmanager_config(state).read_text()


def test_prometheus_config_copy_offsets_every_target_and_keeps_the_rules(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_PORT_OFFSET", "20000")
    rendered = _stack.render_prometheus_config(state)
    source = _stack.ROOT / "stack" / "prometheus"
    targets = {path.name: path.read_text() for path in (rendered.parent / "targets").glob("*.yml")}
    assert set(targets) == {path.name for path in (source / "targets").glob("*.yml")}
    assert "'127.0.0.1:29090'" in targets["prometheus.yml"]
    assert "'127.0.0.1:29093'" in targets["alertmanager.yml"]
    assert "'127.0.0.1:28888'" in targets["otel-collector.yml"]
    assert f"- {_stack.ROOT / 'alerts'}/*.yml" in rendered.read_text()


def test_an_offset_moves_every_endpoint_and_engine_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_PORT_OFFSET", "100")
    assert _stack.endpoints() == {
        "tempo": "http://127.0.0.1:3300",
        "loki": "http://127.0.0.1:3200",
        "prometheus": "http://127.0.0.1:9190",
        "alertmanager": "http://127.0.0.1:9193",
        "otlp": "http://127.0.0.1:4418",
    }
    env = _stack._engine_env(Path("/state"))
    assert env["OTEL_CORRELATE_LOKI_PORT"] == "3200" and env["OTEL_CORRELATE_TEMPO_OTLP"] == "127.0.0.1:4517"


def _default(value: str) -> str:
    """A config value with every ``${VAR:-default}`` / ``${env:VAR:-default}`` replaced by its default."""
    return re.sub(r"\$\{(?:env:)?[A-Z_]+:-([^}]*)\}", r"\1", value)


def _engine_at(address: str) -> str:
    port = int(re.search(r"127\.0\.0\.1:(\d+)", _default(address)).group(1))  # type: ignore[union-attr]
    [engine] = [e.name for e in _stack.ENGINES if port in e.ports]
    return engine


def _sends() -> set[tuple[str, str]]:
    """Who sends data to whom, read from the config files each engine runs with."""

    def load(path: Path) -> Any:
        return yaml.safe_load(path.read_text())

    collector = load(ROOT / "collector" / "config.yaml")
    tempo = load(ROOT / "stack" / "tempo" / "tempo.yaml")
    loki = load(ROOT / "stack" / "loki" / "loki.yaml")
    prometheus = load(ROOT / "stack" / "prometheus" / "prometheus.yml")
    edges = set()

    def endpoints(config: Any) -> list[str]:  # an exporter's endpoint, wherever it nests it
        if not isinstance(config, dict):
            return []
        found = [config["endpoint"]] if isinstance(config.get("endpoint"), str) else []
        return found + [e for value in config.values() for e in endpoints(value)]

    for exporter in collector["exporters"].values():
        edges.update(("collector", _engine_at(address)) for address in endpoints(exporter))
    for target in tempo["metrics_generator"]["storage"]["remote_write"]:
        edges.add(("tempo", _engine_at(target["url"])))
    edges.add(("loki", _engine_at(loki["ruler"]["alertmanager_url"])))
    for manager in prometheus["alerting"]["alertmanagers"]:
        for sd in manager["file_sd_configs"]:
            for name in sd["files"]:
                for group in load(ROOT / "stack" / "prometheus" / name):
                    edges.update(("prometheus", _engine_at(t)) for t in group["targets"])
    for target in prometheus.get("remote_write") or []:
        edges.add(("prometheus", _engine_at(target["url"])))
    return edges


def test_each_engine_stops_before_the_engines_it_sends_to() -> None:
    edges = _sends()
    assert edges == {
        ("collector", "tempo"),
        ("collector", "loki"),
        ("collector", "prometheus"),
        ("tempo", "prometheus"),
        ("loki", "alertmanager"),
        ("prometheus", "alertmanager"),
    }
    assert sorted(_stack.STOP_ORDER) == sorted(e.name for e in _stack.ENGINES)
    order = _stack.STOP_ORDER.index
    assert [(a, b) for a, b in sorted(edges) if order(a) > order(b)] == []


def test_down_stops_the_engines_in_stop_order(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running = {engine.name: 1000 + n for n, engine in enumerate(_stack.ENGINES)}
    stopped: list[str] = []
    by_pid = {pid: name for name, pid in running.items()}

    def kill(pid: int, _signal: int) -> None:
        stopped.append(by_pid[pid])
        running.pop(by_pid[pid])

    monkeypatch.setattr(_stack, "_running_pid", lambda _state, engine: running.get(engine.name))
    monkeypatch.setattr(_stack.os, "kill", kill)
    _stack.down(progress=lambda _line: None)
    assert stopped == list(_stack.STOP_ORDER)


# Tempo's /status/services while it hangs in its shutdown after a query (captured from our build).
_TEMPO_STOPPING = """+------------------------+------------+--------------+
| SERVICE NAME           |     STATUS | FAILURE CASE |
+------------------------+------------+--------------+
| block-builder          | Terminated |              |
| cache-provider         |   Stopping |              |
| compactor              | Terminated |              |
| distributor            | Terminated |              |
| ingester               | Terminated |              |
| internal-server        |   Stopping |              |
| memberlist-kv          |   Stopping |              |
| metrics-generator      | Terminated |              |
| metrics-generator-ring | Terminated |              |
| optional-store         | Terminated |              |
| querier                | Terminated |              |
| query-frontend         |   Stopping |              |
| server                 |   Stopping |              |
| store                  |   Stopping |              |
+------------------------+------------+--------------+
"""


def _serve_text(text: str) -> tuple[Any, str]:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text.encode()
            self.send_response(200 if self.path == "/status/services" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_tempos_write_path_counts_as_stopped_only_when_all_of_it_terminated() -> None:
    states = _stack.tempo_services(_TEMPO_STOPPING)
    assert (len(states), states["ingester"], states["query-frontend"]) == (14, "Terminated", "Stopping")
    still_ingesting = _TEMPO_STOPPING.replace(
        "| ingester               | Terminated |", "| ingester               |   Stopping |"
    )
    for table, stopped in ((_TEMPO_STOPPING, True), (still_ingesting, False), ("404 page not found", False)):
        server, url = _serve_text(table)
        try:
            assert _stack.tempo_write_path_stopped(url) is stopped, table
        finally:
            server.shutdown()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert _stack.tempo_write_path_stopped(f"http://127.0.0.1:{port}") is False  # gone already: not known


def test_a_tempo_stuck_after_its_write_path_stopped_is_killed_without_the_30s_wait(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signals: list[int] = []
    alive = {"tempo": True}
    lines: list[str] = []

    def kill(_pid: int, sent: int) -> None:
        signals.append(sent)
        if sent == _stack.signal.SIGKILL:
            alive["tempo"] = False

    monkeypatch.setattr(_stack, "ENGINES", tuple(e for e in _stack.ENGINES if e.name == "tempo"))
    monkeypatch.setattr(_stack, "_running_pid", lambda _state, _engine: 4242 if alive["tempo"] else None)
    monkeypatch.setattr(_stack.os, "kill", kill)
    monkeypatch.setattr(_stack, "TEMPO_EXIT_GRACE_S", 0.0)
    polled: list[str] = []
    monkeypatch.setattr(
        _stack, "tempo_write_path_stopped", lambda url: polled.append(url) or len(polled) >= 3
    )
    started = _stack.time.monotonic()
    _stack.down(progress=lines.append)
    assert _stack.time.monotonic() - started < 10  # far from the 30 s deadline (a bound, not a timing)
    assert len(polled) == 3  # it lived through the two polls that found its write path still running
    assert signals == [_stack.signal.SIGTERM, _stack.signal.SIGKILL]
    assert lines[0].startswith("[stack] tempo: its write path stopped") and "grafana/tempo#7967" in lines[0]
    assert lines[1:] == ["[stack] stopped tempo"]


def test_a_tempo_that_exits_within_the_grace_is_not_killed(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signals: list[int] = []
    checks = {"left": 5}  # it exits by itself five checks after its write path stopped

    def running(_state: Path, _engine: Any) -> int | None:
        checks["left"] -= 1
        return 4242 if checks["left"] > 0 else None

    lines: list[str] = []
    monkeypatch.setattr(_stack, "ENGINES", tuple(e for e in _stack.ENGINES if e.name == "tempo"))
    monkeypatch.setattr(_stack, "_running_pid", running)
    monkeypatch.setattr(_stack.os, "kill", lambda _pid, sent: signals.append(sent))
    monkeypatch.setattr(_stack, "tempo_write_path_stopped", lambda _url: True)
    _stack.down(progress=lines.append)
    assert (signals, lines) == ([_stack.signal.SIGTERM], ["[stack] stopped tempo"])


def test_a_tempo_cut_off_mid_answer_counts_as_unknown() -> None:
    """Tempo exiting while it answers: a short body where more was promised (IncompleteRead)."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer_and_go() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n| ingester | Terminated |")

    threading.Thread(target=answer_and_go, daemon=True).start()
    try:
        assert _stack.tempo_write_path_stopped(f"http://127.0.0.1:{listener.getsockname()[1]}") is False
    finally:
        listener.close()
