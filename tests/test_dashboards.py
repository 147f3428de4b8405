"""The Grafana dashboards (dashboards/json), read as data: generated, complete, and wired to real data sources."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
JSON_DIR = ROOT / "dashboards" / "json"
UIDS = {
    "otel-correlate-service-overview",
    "otel-correlate-orders",
    "otel-correlate-sre",
    "otel-correlate-deployment-health",
    "otel-correlate-collector",
}
# Panels the issue names as jumping to traces and logs: every panel that shows data per service.
NO_LINKS_NEEDED = {"Alerts firing now", "CPU by component", "Memory by component", "Open file descriptors"}


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_generate", ROOT / "dashboards" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def boards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(JSON_DIR.glob("*.json"))}


def panels() -> list[tuple[str, dict[str, Any]]]:
    return [(uid, p) for uid, board in boards().items() for p in board["panels"]]


def queries(panel: dict[str, Any]) -> list[str]:
    return [t.get("expr") or t.get("query") for t in panel["targets"]]


def provisioned_uids() -> set[str]:
    document = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/datasources.yaml").read_text())
    return {source["uid"] for source in document["datasources"]}


def test_committed_json_is_what_the_generator_produces() -> None:
    rendered = generator().render()
    committed = {path.name: path.read_text() for path in JSON_DIR.glob("*.json")}
    assert sorted(committed) == sorted(rendered), "run: .venv/bin/python dashboards/generate.py"
    for name, text in rendered.items():
        assert committed[name] == text, f"{name} drifted; run: .venv/bin/python dashboards/generate.py"


def test_the_five_dashboards_have_their_stable_uids_and_file_names() -> None:
    assert {uid: board["uid"] for uid, board in boards().items()} == {uid: uid for uid in UIDS}


def test_every_dashboard_url_in_the_alert_rules_points_at_a_dashboard() -> None:
    rule_files = [*ROOT.glob("alerts/*.yml"), *ROOT.glob("alerts/loki/fake/*.yml")]
    urls = set()
    for path in rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    urls.add(rule["annotations"]["dashboard_url"])
    linked = {re.search(r"/d/([^?/]+)", url).group(1) for url in urls}  # type: ignore[union-attr]
    assert linked == UIDS


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_dashboard_refreshes_every_30s_and_has_service_and_environment_variables(uid: str) -> None:
    board = boards()[uid]
    assert board["refresh"] == "30s"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"service", "environment"} <= set(variables)
    assert variables["service"]["datasource"]["uid"] == "prometheus"
    assert "$environment" in variables["service"]["definition"], "the environment filters the service list"
    assert variables["service"]["allValue"] == ".+", "Loki selectors need a matcher that cannot be empty"


def test_every_panel_has_a_unit_a_description_and_a_provisioned_datasource() -> None:
    known = provisioned_uids()
    for uid, panel in panels():
        where = f"{uid} / {panel['title']}"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where} has no unit"
        assert len(panel.get("description", "")) > 20, f"{where} has no description"
        assert panel["datasource"]["uid"] in known, where
        assert panel["targets"], f"{where} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in known, where
            assert target["datasource"]["uid"] == panel["datasource"]["uid"], where


def test_rate_queries_use_rate_interval() -> None:
    for uid, panel in panels():
        for query in queries(panel):
            unquoted = re.sub(r'"[^"]*"', '""', query)  # [45].. in a matcher is no range
            for window in re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", unquoted):
                assert window == "$__rate_interval", f"{uid} / {panel['title']}: {query}"


def test_latency_panels_show_exemplars() -> None:
    latency = [(uid, p) for uid, p in panels() if p["fieldConfig"]["defaults"]["unit"] == "s"]
    assert {p["title"] for _, p in latency} >= {"Latency p50 / p95 / p99", "Check response time (p95)"}
    for uid, panel in latency:
        histogram_targets = [t for t in panel["targets"] if "_bucket" in t["expr"]]
        assert all(t["exemplar"] for t in histogram_targets), f"{uid} / {panel['title']}"


def test_panels_link_to_traces_in_tempo_and_logs_in_loki() -> None:
    for uid, panel in panels():
        if panel["title"] in NO_LINKS_NEEDED:
            continue
        urls = [link["url"] for link in panel["fieldConfig"]["defaults"]["links"]]
        where = f"{uid} / {panel['title']}"
        # A panel may itself be the logs or the traces view; it links to the other one.
        wants = {"tempo", "loki"} - {panel["datasource"]["uid"]}
        for uid_wanted in wants:
            assert any(f"%22datasource%22%3A%22{uid_wanted}%22" in url for url in urls), (
                f"{where}: {uid_wanted}"
            )
        for url in urls:
            assert url.startswith("/explore?"), where
            assert "GRAFANAVAR" not in url and "%24" not in url, f"{where}: an encoded variable in {url}"


def test_orders_dashboard_shows_one_orders_logs_and_trace_side_by_side() -> None:
    board = boards()["otel-correlate-orders"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["orderId"]["type"] == "textbox"
    by_title = {p["title"]: p for p in board["panels"]}
    logs, trace = by_title["Logs of order $orderId"], by_title["Trace of order $orderId"]
    assert logs["type"] == "logs" and logs["datasource"]["uid"] == "loki"
    assert logs["targets"][0]["expr"].startswith('{service_name=~"$service"')
    assert logs["targets"][0]["expr"].endswith('| orderId="$orderId"')
    assert trace["type"] == "traces" and trace["datasource"]["uid"] == "tempo"
    assert trace["targets"][0]["query"] == '{ span.orderId = "$orderId" }'
    assert logs["gridPos"]["y"] == trace["gridPos"]["y"] and logs["gridPos"]["x"] != trace["gridPos"]["x"]


def test_sre_dashboard_has_an_error_heatmap_component_status_and_firing_alerts() -> None:
    by_type = {p["type"] for p in boards()["otel-correlate-sre"]["panels"]}
    assert {"heatmap", "state-timeline", "table"} <= by_type
    texts = " ".join(q for _, p in panels() if _ == "otel-correlate-sre" for q in queries(p))
    assert "up" in texts and "target_info" in texts and "ALERTS" in texts


def test_panels_do_not_overlap() -> None:
    for uid, board in boards().items():
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            g = panel["gridPos"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{uid} / {panel['title']} overlaps"
            assert g["x"] + g["w"] <= 24
            cells |= mine
