"""The launcher's own behaviour, without starting engines: messages, idempotence, rendered secrets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from otel_correlate import _stack


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
