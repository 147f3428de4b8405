"""Loki ruler rules: Prometheus-format rule groups with LogQL; loaded by the running ruler in the e2e suite."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULE_FILES = sorted((ROOT / "alerts" / "loki" / "fake").glob("*.yml"))


def rules() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in RULE_FILES:
        data = yaml.safe_load(path.read_text())
        assert set(data) == {"groups"}, path
        for group in data["groups"]:
            assert set(group) <= {"name", "interval", "rules", "limit"}, group
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}, rule
                found[rule.get("alert") or rule["record"]] = rule
    return found


def test_rules_live_in_the_fake_tenant_directory() -> None:
    assert RULE_FILES, "no rule files under alerts/loki/fake/ (auth_enabled: false reads tenant 'fake')"


def test_every_expression_is_logql_over_indexed_labels() -> None:
    for name, rule in rules().items():
        expr = rule["expr"]
        selectors = re.findall(r"\{([^}]*)\}", expr)
        assert selectors, f"{name}: no stream selector"
        for selector in selectors:
            assert "service_name" in selector, f"{name}: select streams by the index label service_name"
        assert re.search(r"\[\d+[smh]\]", expr), f"{name}: a log-range aggregation needs a range"
        assert "orderId" not in expr.split("|")[0], f"{name}: orderId is structured metadata, never a label"


def test_dead_letter_rule_pages_on_a_single_line() -> None:
    rule = rules()["DeadLetterLogged"]
    assert '|= "DEAD_LETTER"' in rule["expr"]
    assert rule["expr"].strip().endswith("> 0")
    assert "for" not in rule
    assert rule["labels"] == {"severity": "critical", "service": "{{ $labels.service_name }}"}


def test_error_spike_rule_is_per_service_on_detected_level() -> None:
    rule = rules()["ErrorLogSpike"]
    assert "sum by (service_name)" in rule["expr"]
    assert "detected_level" in rule["expr"]
    assert rule["labels"]["severity"] == "warning"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")
def test_rule_files_have_prometheus_structure(tmp_path: Path) -> None:
    """promtool cannot parse LogQL; swapping every expr for `vector(1)` checks the rest of the format."""
    for path in RULE_FILES:
        data = yaml.safe_load(path.read_text())
        for group in data["groups"]:
            for rule in group["rules"]:
                rule["expr"] = "vector(1)"
        copy = tmp_path / path.name
        copy.write_text(yaml.safe_dump(data))
        done = subprocess.run(["promtool", "check", "rules", str(copy)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
