"""Alertmanager routing, inhibition and secrets, checked with amtool (prometheus-alertmanager 0.25)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "stack" / "alertmanager" / "alertmanager.yml"
SECRETS_DIR = "/etc/otel-correlate/secrets/"
TELEGRAM_PLACEHOLDER = "RENDERED_FROM_SECRETS_telegram_bot_token"

amtool = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(
    amtool is None, reason="amtool missing: apt-get install prometheus-alertmanager"
)


def config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def notifier_configs() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (receiver["name"], kind, item)
        for receiver in config()["receivers"]
        for kind, items in receiver.items()
        if kind.endswith("_configs")
        for item in items
    ]


@needs_amtool
def test_amtool_check_config() -> None:
    done = subprocess.run([amtool, "check-config", str(CONFIG)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 inhibit rules" in done.stdout


ROUTES = [
    ({"alertname": "ServiceHighErrorRatio", "severity": "critical", "service": "orders"}, "recovery,pager"),
    ({"alertname": "ServiceHighLatencyP95", "severity": "warning", "service": "orders"}, "recovery,email"),
    (
        {"alertname": "OtelCollectorDroppingData", "severity": "critical", "service": "otel-collector"},
        "recovery,platform-pager",
    ),
    (
        {"alertname": "OtelCollectorQueueNearlyFull", "severity": "warning", "service": "otel-collector"},
        "recovery,platform-email",
    ),
    (
        {"alertname": "StackComponentDown", "severity": "critical", "service": "loki"},
        "recovery,platform-pager",
    ),
    ({"alertname": "DeadLetterLogged", "severity": "critical", "service": "notifier"}, "recovery,pager"),
    ({"alertname": "Watchdog", "severity": "info", "service": "alerting-pipeline"}, "watchdog"),
    ({"alertname": "SomethingInformational", "severity": "info", "service": "orders"}, "default"),
]


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receivers"), ROUTES, ids=[f"{r[0]['alertname']}-{r[0]['severity']}" for r in ROUTES]
)
def test_amtool_routes(labels: dict[str, str], receivers: str) -> None:
    args = [f"{key}={value}" for key, value in labels.items()]
    done = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            f"--verify.receivers={receivers}",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == receivers


def test_critical_pages_on_slack_pagerduty_and_telegram_and_warning_mails() -> None:
    receivers = {r["name"]: r for r in config()["receivers"]}
    for name in ("pager", "platform-pager"):
        assert {"slack_configs", "pagerduty_configs", "telegram_configs"} <= set(receivers[name]), name
    for name in ("email", "platform-email"):
        assert set(receivers[name]) == {"name", "email_configs"}, name
    assert receivers["recovery"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9095/alerts"
    assert receivers["watchdog"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9095/watchdog"


def test_grouped_by_alertname_and_service_and_recovery_continues() -> None:
    route = config()["route"]
    assert route["group_by"] == ["alertname", "service"]
    recovery = next(r for r in route["routes"] if r["receiver"] == "recovery")
    assert recovery["continue"] is True
    assert recovery["matchers"] == ['severity=~"critical|warning"']


def test_warning_is_inhibited_by_the_critical_of_the_same_alert_and_service() -> None:
    assert {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["alertname", "service"],
    } in config()["inhibit_rules"]


def test_send_resolved_is_on_for_every_notifier() -> None:
    missing = [
        (receiver, kind)
        for receiver, kind, item in notifier_configs()
        if item.get("send_resolved") is not True
    ]
    assert missing == []


def test_no_secret_is_in_the_file() -> None:
    text = CONFIG.read_text()
    for receiver, kind, item in notifier_configs():
        for inline in ("api_url", "routing_key", "service_key", "auth_password", "auth_secret", "api_key"):
            assert inline not in item, f"{receiver}/{kind}: use {inline}_file"
        if kind == "telegram_configs":
            # 0.25 has no bot_token_file: the launcher renders the token into a private copy.
            assert item["bot_token"] == TELEGRAM_PLACEHOLDER
    glob = config()["global"]
    assert "slack_api_url" not in glob and "smtp_auth_password" not in glob
    files = re.findall(r"^\s*(?:-\s*)?\w+_file:\s*(\S+)", text, re.M)
    assert files and all(path.startswith(SECRETS_DIR) for path in files), files
    assert not re.search(r"hooks\.slack\.com/services/\w|\b\d{8,10}:[\w-]{30,}", text), (
        "a real token is in the file"
    )


@needs_amtool
def test_config_loads_with_the_operators_secret_files(tmp_path: Path) -> None:
    """What an operator deploys: the same file with its secrets directory somewhere else."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in (
        "slack_webhook_url",
        "pagerduty_routing_key",
        "pagerduty_platform_routing_key",
        "smtp_password",
    ):
        (secrets / name).write_text(
            "https://hooks.example.invalid/x\n" if "slack" in name else "not-a-secret\n"
        )
    copy = tmp_path / "alertmanager.yml"
    copy.write_text(CONFIG.read_text().replace(SECRETS_DIR, f"{secrets}/"))
    done = subprocess.run([amtool, "check-config", str(copy)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
