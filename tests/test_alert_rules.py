"""Every Prometheus alert is valid, follows the mixin conventions, has a runbook, and is unit-tested both ways."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.yml"))
TEST_FILES = sorted((ALERTS / "tests").glob("*.test.yml"))
LOKI_RULE_FILES = sorted((ALERTS / "loki" / "fake").glob("*.yml"))
RUNBOOK_URL = "https://github.com/otel-correlate/otel-correlate/blob/main/docs/runbooks/{}.md"
DASHBOARD_UIDS = (
    "otel-correlate-service-overview",
    "otel-correlate-orders",
    "otel-correlate-sre",
    "otel-correlate-deployment-health",
    "otel-correlate-collector",
)
RUNBOOK_SECTIONS = ("## Meaning", "## Impact", "## Diagnosis", "## Quick actions", "## Mitigation")
#: Alerts that by design never stop firing, so no test can show them quiet.
ALWAYS_FIRING = {"Watchdog"}

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool missing: apt-get install prometheus")


def alerting_rules(files: list[Path]) -> list[dict[str, Any]]:
    return [
        rule
        for path in files
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


ALL_ALERTS = alerting_rules(RULE_FILES) + alerting_rules(LOKI_RULE_FILES)


def test_rule_files_and_tests_exist_per_subject() -> None:
    subjects = {p.stem for p in RULE_FILES}
    assert {"services", "business", "health", "collector", "watchdog", "slo"} <= subjects
    assert {p.name.removesuffix(".test.yml") for p in TEST_FILES} == subjects


@needs_promtool
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    done = subprocess.run(
        [promtool, "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("rule", ALL_ALERTS, ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_follows_the_conventions(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"(?:[A-Z][a-z0-9]+|[A-Z]+(?=[A-Z][a-z]|$))+", name), f"{name} is not CamelCase"
    labels, annotations = rule["labels"], rule["annotations"]
    assert labels["severity"] in ("critical", "warning", "info"), name
    assert labels.get("service") or "service" in rule["expr"] or name.endswith("ErrorBudgetBurn"), (
        f"{name}: needs a service label for routing and inhibition"
    )
    assert annotations["summary"] and "{{" not in annotations["summary"], f"{name}: summary must be static"
    assert "{{" in annotations["description"], f"{name}: description must be templated"
    assert annotations["runbook_url"] == RUNBOOK_URL.format(name)
    assert any(
        annotations["dashboard_url"].startswith(f"http://127.0.0.1:3000/d/{uid}") for uid in DASHBOARD_UIDS
    ), annotations["dashboard_url"]


@pytest.mark.parametrize("name", sorted({r["alert"] for r in ALL_ALERTS}))
def test_every_alert_has_a_runbook_with_the_five_sections(name: str) -> None:
    runbook = ROOT / "docs" / "runbooks" / f"{name}.md"
    assert runbook.exists(), f"write {runbook.relative_to(ROOT)}"
    text = runbook.read_text()
    assert text.startswith(f"# {name}\n")
    positions = [text.find(section + "\n") for section in RUNBOOK_SECTIONS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), (
        f"{runbook.name} needs, in order: {', '.join(RUNBOOK_SECTIONS)}"
    )


def test_no_runbook_without_an_alert() -> None:
    names = {r["alert"] for r in ALL_ALERTS}
    assert {p.stem for p in (ROOT / "docs" / "runbooks").glob("*.md")} == names


def _cases() -> dict[str, dict[str, int]]:
    """alertname -> {"fires": n, "quiet": n} over every alert_rule_test in alerts/tests/."""
    cases: dict[str, dict[str, int]] = {}
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                counts = cases.setdefault(case["alertname"], {"fires": 0, "quiet": 0})
                counts["fires" if case.get("exp_alerts") else "quiet"] += 1
    return cases


@pytest.mark.parametrize("name", sorted({r["alert"] for r in alerting_rules(RULE_FILES)}))
def test_every_prometheus_alert_is_tested_firing_and_quiet(name: str) -> None:
    counts = _cases().get(name, {"fires": 0, "quiet": 0})
    assert counts["fires"] >= 1, f"{name}: no promtool case where it fires"
    if name not in ALWAYS_FIRING:
        assert counts["quiet"] >= 1, f"{name}: no promtool case where it must not fire"


def test_tests_only_name_alerts_that_exist() -> None:
    assert set(_cases()) <= {r["alert"] for r in alerting_rules(RULE_FILES)}


@needs_promtool
def test_a_broken_threshold_fails_the_promtool_test(tmp_path: Path) -> None:
    """The unit tests bite: moving the 5 % error threshold to 50 % must make them fail."""
    (tmp_path / "tests").mkdir()
    broken = (ALERTS / "services.yml").read_text().replace("> 0.05", "> 0.5")
    (tmp_path / "services.yml").write_text(broken)
    shutil.copy(ALERTS / "tests" / "services.test.yml", tmp_path / "tests")
    done = subprocess.run(
        [promtool, "test", "rules", "services.test.yml"],
        cwd=tmp_path / "tests",
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "alertname: ServiceHighErrorRatio, time: 6m" in done.stdout + done.stderr
