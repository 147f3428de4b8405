"""Retention per backend is set in the shipped configs, and the engines accept those configs.

Defaults: logs 90 days (data-protection rules ask for it), traces 14 days, metrics
30 days; docs/operations.md says how to change each. The parsing tests read the
files as data; the e2e ones ask the built Loki and Tempo binaries (when they are in
the cache) to verify the configs.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from otel_correlate import _build, _stack

ROOT = Path(__file__).resolve().parent.parent
LOKI = ROOT / "stack" / "loki" / "loki.yaml"
TEMPO = ROOT / "stack" / "tempo" / "tempo.yaml"
COMPOSE = ROOT / "docker-compose.otel.yml"

_DEFAULT = re.compile(r"^\$\{(?P<name>[A-Z_]+):-(?P<default>[^}]*)\}$")


def _hours(duration: str) -> float:
    """Hours in a Go/Prometheus duration such as 2160h, 90d or 1h30m."""
    units = {"d": 24.0, "h": 1.0, "m": 1 / 60, "s": 1 / 3600}
    parts = re.findall(r"(\d+)([dhms])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def _env_default(value: str, variable: str) -> str:
    match = _DEFAULT.match(value)
    assert match, f"{value!r} should be ${{{variable}:-<default>}}"
    assert match.group("name") == variable
    return match.group("default")


def test_logs_are_kept_90_days_and_the_compactor_deletes_older_ones() -> None:
    config = yaml.safe_load(LOKI.read_text())
    retention = _env_default(config["limits_config"]["retention_period"], "OTEL_CORRELATE_LOGS_RETENTION")
    assert _hours(retention) == 90 * 24
    # Without the compactor's retention, retention_period is not enforced at all.
    compactor = config["compactor"]
    assert compactor["retention_enabled"] is True
    assert compactor["delete_request_store"] == "filesystem"  # Loki 3.x requires one with retention
    # Retention is applied per index period: it must be a whole number of them.
    period = config["schema_config"]["configs"][-1]["index"]["period"]
    assert _hours(retention) % _hours(period) == 0


def test_traces_are_kept_14_days_by_default() -> None:
    config = yaml.safe_load(TEMPO.read_text())
    retention = _env_default(
        config["compactor"]["compaction"]["block_retention"], "OTEL_CORRELATE_TRACES_RETENTION"
    )
    assert _hours(retention) == 14 * 24


def _prometheus_retention(argv: list[str]) -> str:
    values = [a.split("=", 1)[1] for a in argv if a.startswith("--storage.tsdb.retention.time=")]
    assert len(values) == 1, argv
    return values[0]


def test_metrics_are_kept_30_days_natively_and_in_compose(tmp_path: Path) -> None:
    [engine] = [e for e in _stack.ENGINES if e.name == "prometheus"]
    try:
        native = engine.argv(tmp_path, {})
    except _stack.StackError:
        pytest.skip("Debian's prometheus is not installed, so the native command line cannot be built")
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]["command"]
    assert _hours(_prometheus_retention(native)) == 30 * 24
    assert _prometheus_retention(compose) == _prometheus_retention(native)


def _verify(argv: list[str], tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OTEL_CORRELATE_STATE_DIR": str(tmp_path), **extra}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.e2e
@pytest.mark.parametrize("retention", [None, "720h"])
def test_loki_accepts_the_retention_config(tmp_path: Path, retention: str | None) -> None:
    loki = _build.binary_path("loki")
    if not loki.is_file():
        pytest.skip(f"{loki} is not built (python -m otel_correlate._build loki)")
    extra = {"OTEL_CORRELATE_LOGS_RETENTION": retention} if retention else {}
    completed = _verify(
        [str(loki), f"-config.file={LOKI}", "-config.expand-env=true", "-verify-config"], tmp_path, **extra
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "config is valid" in completed.stderr + completed.stdout


@pytest.mark.e2e
def test_tempo_accepts_the_retention_config(tmp_path: Path) -> None:
    tempo = _build.binary_path("tempo")
    if not tempo.is_file():
        pytest.skip(f"{tempo} is not built (python -m otel_correlate._build tempo)")
    completed = _verify(
        [str(tempo), f"-config.file={TEMPO}", "-config.expand-env=true", "-config.verify=true"], tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-2000:]


@pytest.mark.e2e
def test_loki_refuses_retention_without_a_delete_request_store(tmp_path: Path) -> None:
    # Proves -verify-config really checks the compactor block, so the test above means something.
    loki = _build.binary_path("loki")
    if not loki.is_file():
        pytest.skip(f"{loki} is not built (python -m otel_correlate._build loki)")
    config = LOKI.read_text().replace("  delete_request_store: filesystem\n", "")
    broken = tmp_path / "loki.yaml"
    broken.write_text(config)
    completed = _verify(
        [str(loki), f"-config.file={broken}", "-config.expand-env=true", "-verify-config"], tmp_path
    )
    assert completed.returncode != 0
    assert "delete" in (completed.stderr + completed.stdout).lower()
