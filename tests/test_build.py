"""The native engines build from this repository and start on loopback.

The hashing tests are units (no Go needed). The ``e2e`` tests build the
binaries on first use (several minutes; ``pytest -s`` shows progress), then
start each engine on free loopback ports with its stack config, wait until it
answers ready, and stop it. Nothing is assumed to be running beforehand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from otel_correlate import _build
from otel_correlate._procs import free_port

REPO = Path(__file__).resolve().parents[1]


def _copy_inputs(root: Path) -> None:
    for name in _build.ENGINE_NAMES:
        for relative in _build._ENGINES[name].inputs:
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, target)


def test_digest_is_stable_for_unchanged_inputs(tmp_path: Path) -> None:
    _copy_inputs(tmp_path)
    first = _build.input_digest("otelcol-correlate", root=tmp_path, go_version="go1.26.8")
    second = _build.input_digest("otelcol-correlate", root=tmp_path, go_version="go1.26.8")
    assert first == second
    assert len(first) == 64


def test_manifest_change_changes_only_the_collector_digest(tmp_path: Path) -> None:
    _copy_inputs(tmp_path)
    before = {n: _build.input_digest(n, root=tmp_path, go_version="go1.26.8") for n in _build.ENGINE_NAMES}
    manifest = tmp_path / "collector" / "manifest.yaml"
    manifest.write_text(manifest.read_text() + "\n# a new component would go here\n")
    after = {n: _build.input_digest(n, root=tmp_path, go_version="go1.26.8") for n in _build.ENGINE_NAMES}
    assert after["otelcol-correlate"] != before["otelcol-correlate"]
    assert after["loki"] == before["loki"]
    assert after["tempo"] == before["tempo"]


def test_go_sum_and_go_version_changes_invalidate_the_engine(tmp_path: Path) -> None:
    _copy_inputs(tmp_path)
    base = _build.input_digest("tempo", root=tmp_path, go_version="go1.26.8")
    assert _build.input_digest("tempo", root=tmp_path, go_version="go1.27.0") != base
    go_sum = tmp_path / "engines" / "tempo" / "go.sum"
    go_sum.write_text(go_sum.read_text() + "example.com/x v1.0.0 h1:AAAA=\n")
    assert _build.input_digest("tempo", root=tmp_path, go_version="go1.26.8") != base


def test_binary_path_lives_in_the_cache_dir_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_CACHE_DIR", str(tmp_path / "cache"))
    assert _build.binary_path("loki") == tmp_path / "cache" / "bin" / "loki"
    monkeypatch.delenv("OTEL_CORRELATE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _build.cache_dir() == tmp_path / "xdg" / "otel-correlate"


def test_unknown_engine_name_is_rejected_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="otelcol-correlate, loki, tempo"):
        _build.binary_path("grafana")


# --- e2e: real binaries, real processes -------------------------------------------------


def _binary(name: str) -> Path:
    return _build.ensure_binaries([name])[name]


def _wait_for_http(url: str, *, expect: str | None, timeout: float, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = response.read().decode(errors="replace")
                if response.status == 200 and (expect is None or expect in body):
                    return body
                last = f"HTTP {response.status}: {body[:200]}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:200]!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready after {timeout}s; last answer: {last}")


@contextmanager
def _running(argv: list[str], *, env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, cwd=REPO, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _log_tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


@pytest.mark.e2e
def test_collector_config_validates_with_the_built_collector(tmp_path: Path) -> None:
    collector = _binary("otelcol-correlate")
    completed = subprocess.run(
        [str(collector), "validate", f"--config={REPO / 'collector' / 'config.yaml'}"],
        env={**os.environ, "OTEL_CORRELATE_STATE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr


@pytest.mark.e2e
def test_collector_starts_and_reports_healthy_on_loopback(tmp_path: Path) -> None:
    collector = _binary("otelcol-correlate")
    health, telemetry = free_port(), free_port()
    env = {
        "OTEL_CORRELATE_STATE_DIR": str(tmp_path / "state"),
        "OTEL_CORRELATE_BIND": "127.0.0.1",
        "OTEL_CORRELATE_OTLP_GRPC_PORT": str(free_port()),
        "OTEL_CORRELATE_OTLP_HTTP_PORT": str(free_port()),
        "OTEL_CORRELATE_HEALTH_PORT": str(health),
        "OTEL_CORRELATE_TELEMETRY_PORT": str(telemetry),
        "OTEL_CORRELATE_PPROF_ENDPOINT": f"127.0.0.1:{free_port()}",
    }
    log = tmp_path / "collector.log"
    argv = [str(collector), f"--config={REPO / 'collector' / 'config.yaml'}"]
    with _running(argv, env=env, log=log) as process:
        try:
            body = _wait_for_http(
                f"http://127.0.0.1:{health}/", expect="Server available", timeout=60, process=process
            )
            assert '"status":"Server available"' in body
            metrics = _wait_for_http(
                f"http://127.0.0.1:{telemetry}/metrics", expect="otelcol_", timeout=30, process=process
            )
            assert "otelcol_process_uptime" in metrics
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- collector log ---\n{_log_tail(log)}") from None


@pytest.mark.e2e
def test_loki_starts_and_answers_ready_on_loopback(tmp_path: Path) -> None:
    loki = _binary("loki")
    port = free_port()
    env = {
        "OTEL_CORRELATE_STATE_DIR": str(tmp_path / "state"),
        "OTEL_CORRELATE_LOKI_RULES_DIR": str(tmp_path / "rules"),
        "OTEL_CORRELATE_LOKI_HOST": "127.0.0.1",
        "OTEL_CORRELATE_LOKI_PORT": str(port),
        "OTEL_CORRELATE_LOKI_GRPC_PORT": str(free_port()),
    }
    (tmp_path / "rules" / "fake").mkdir(parents=True)
    log = tmp_path / "loki.log"
    argv = [str(loki), f"-config.file={REPO / 'stack' / 'loki' / 'loki.yaml'}", "-config.expand-env=true"]
    with _running(argv, env=env, log=log) as process:
        try:
            assert (
                _wait_for_http(
                    f"http://127.0.0.1:{port}/ready", expect="ready", timeout=120, process=process
                ).strip()
                == "ready"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- loki log ---\n{_log_tail(log)}") from None


@pytest.mark.e2e
def test_tempo_starts_and_answers_ready_on_loopback(tmp_path: Path) -> None:
    tempo = _binary("tempo")
    port = free_port()
    env = {
        "OTEL_CORRELATE_STATE_DIR": str(tmp_path / "state"),
        "OTEL_CORRELATE_TEMPO_HOST": "127.0.0.1",
        "OTEL_CORRELATE_TEMPO_PORT": str(port),
        "OTEL_CORRELATE_TEMPO_GRPC_PORT": str(free_port()),
        "OTEL_CORRELATE_TEMPO_OTLP_GRPC": str(free_port()),
        "OTEL_CORRELATE_TEMPO_OTLP_HTTP": str(free_port()),
    }
    log = tmp_path / "tempo.log"
    argv = [str(tempo), f"-config.file={REPO / 'stack' / 'tempo' / 'tempo.yaml'}", "-config.expand-env=true"]
    with _running(argv, env=env, log=log) as process:
        try:
            assert (
                _wait_for_http(
                    f"http://127.0.0.1:{port}/ready", expect="ready", timeout=120, process=process
                ).strip()
                == "ready"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- tempo log ---\n{_log_tail(log)}") from None
