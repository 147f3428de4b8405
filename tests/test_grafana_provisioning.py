"""Grafana's provisioning (dashboards/provisioning), read as data.

The correlations are the point of the stack: trace -> logs, logs -> trace,
exemplar -> trace, trace -> metrics and the service map. Each test compares a
whole block with what it must be, after the variable expansion Grafana applies
to provisioning files, so a broken link, a wrong uid or an unescaped ``$``
fails here rather than as a dead button in the UI.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_compose import repo_path_of, services

ROOT = Path(__file__).resolve().parent.parent
PROVISIONING = ROOT / "dashboards" / "provisioning"


def grafana_expand(node: Any, where: str = "") -> Any:
    """What Grafana reads from a provisioning value: ``$$`` is a literal ``$``; any other ``$`` is an
    environment variable (``$VAR``, ``${VAR}``), which would silently empty a link template."""
    if isinstance(node, dict):
        return {key: grafana_expand(value, f"{where}.{key}") for key, value in node.items()}
    if isinstance(node, list):
        return [grafana_expand(value, f"{where}[{index}]") for index, value in enumerate(node)]
    if isinstance(node, str):
        unescaped = re.search(r"\$(?!\$)", node.replace("$$", ""))
        assert unescaped is None, (
            f"{where}: {node!r} has a `$` Grafana would expand from its environment; write `$$`"
        )
        return node.replace("$$", "$")
    return node


def datasources() -> dict[str, dict[str, Any]]:
    """The provisioned data sources by uid, as Grafana sees them."""
    document = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yaml").read_text())
    assert document["apiVersion"] == 1
    expanded = grafana_expand(document["datasources"], "datasources")
    by_uid = {source["uid"]: source for source in expanded}
    assert len(by_uid) == len(expanded), "two data sources share a uid"
    return by_uid


def json_data(uid: str) -> dict[str, Any]:
    data: dict[str, Any] = datasources()[uid]["jsonData"]
    return data


def _uid_references(node: Any, where: str) -> dict[str, str]:
    if isinstance(node, dict):
        found = {f"{where}.datasourceUid": node["datasourceUid"]} if "datasourceUid" in node else {}
        for key, value in node.items():
            found.update(_uid_references(value, f"{where}.{key}"))
        return found
    if isinstance(node, list):
        found = {}
        for index, value in enumerate(node):
            found.update(_uid_references(value, f"{where}[{index}]"))
        return found
    return {}


def test_every_datasource_has_a_stable_uid_and_its_compose_url() -> None:
    assert {
        uid: (source["name"], source["type"], source["url"], source["access"], source["editable"])
        for uid, source in datasources().items()
    } == {
        "prometheus": ("Prometheus", "prometheus", "http://prometheus:9090", "proxy", False),
        "loki": ("Loki", "loki", "http://loki:3100", "proxy", False),
        "tempo": ("Tempo", "tempo", "http://tempo:3200", "proxy", False),
        "alertmanager": ("Alertmanager", "alertmanager", "http://alertmanager:9093", "proxy", False),
    }
    assert [uid for uid, source in datasources().items() if source.get("isDefault")] == ["prometheus"]


def test_datasource_urls_name_compose_services_on_their_published_ports() -> None:
    compose = services()
    for uid, source in datasources().items():
        host, port = source["url"].removeprefix("http://").split(":")
        assert host in compose, f"{uid}: {host} is not a service of docker-compose.otel.yml"
        assert f"127.0.0.1:{port}:{port}" in compose[host]["ports"], f"{uid}: {host} does not serve {port}"


def test_every_correlation_points_at_a_provisioned_datasource() -> None:
    references = {}
    for uid in datasources():
        references.update(_uid_references(json_data(uid), uid))
    assert references == {
        "prometheus.exemplarTraceIdDestinations[0].datasourceUid": "tempo",
        "loki.derivedFields[0].datasourceUid": "tempo",
        "tempo.tracesToLogsV2.datasourceUid": "loki",
        "tempo.tracesToMetrics.datasourceUid": "prometheus",
        "tempo.serviceMap.datasourceUid": "prometheus",
        "tempo.lokiSearch.datasourceUid": "loki",
    }
    assert set(references.values()) <= set(datasources())


def test_trace_to_logs_finds_the_span_service_lines_carrying_the_trace_id() -> None:
    assert json_data("tempo")["tracesToLogsV2"] == {
        "datasourceUid": "loki",
        "spanStartTimeShift": "-5m",
        "spanEndTimeShift": "5m",
        "filterByTraceID": True,
        "filterBySpanID": False,
        # Loki's default OTLP mapping makes service.name the index label service_name.
        "tags": [{"key": "service.name", "value": "service_name"}],
        # trace_id is structured metadata in Loki: a label filter after the stream selector.
        "customQuery": True,
        "query": '{service_name="${__span.tags["service.name"]}"} | trace_id="${__trace.traceId}"',
    }


def test_log_line_trace_id_links_to_the_trace_in_tempo() -> None:
    assert json_data("loki")["derivedFields"] == [
        {
            "name": "trace_id",
            # OTLP logs carry trace_id as structured metadata, matched by name, not by a regex on the line.
            "matcherType": "label",
            "matcherRegex": "trace_id",
            "datasourceUid": "tempo",
            "url": "${__value.raw}",
            "urlDisplayLabel": "Open trace",
        }
    ]


def test_metric_exemplars_link_to_their_trace_in_tempo() -> None:
    assert json_data("prometheus")["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "tempo"}
    ]


def test_trace_to_metrics_queries_the_span_metrics_of_the_span_service() -> None:
    assert json_data("tempo")["tracesToMetrics"] == {
        "datasourceUid": "prometheus",
        "spanStartTimeShift": "-5m",
        "spanEndTimeShift": "5m",
        "tags": [{"key": "service.name", "value": "service_name"}],
        "queries": [
            {
                "name": "Request rate",
                "query": "sum by (span_name) (rate(traces_span_metrics_calls_total{$__tags}[5m]))",
            },
            {
                "name": "Error rate",
                "query": 'sum by (span_name) (rate(traces_span_metrics_calls_total{$__tags, status_code="STATUS_CODE_ERROR"}[5m]))',
            },
            {
                "name": "Latency p95 (ms)",
                "query": "histogram_quantile(0.95, sum by (le, span_name) (rate(traces_span_metrics_duration_milliseconds_bucket{$__tags}[5m])))",
            },
        ],
    }


def test_trace_to_metrics_uses_the_span_metrics_the_collector_produces() -> None:
    collector = yaml.safe_load((ROOT / "collector" / "config.yaml").read_text())
    assert "span_metrics" in collector["service"]["pipelines"]["metrics"]["receivers"]
    assert "span_metrics" in collector["service"]["pipelines"]["traces"]["exporters"]
    assert "namespace" not in collector["connectors"]["span_metrics"], (
        "a custom span_metrics namespace renames traces_span_metrics_*; update tracesToMetrics with it"
    )


def test_service_map_and_node_graph_read_the_service_graph_metrics_in_prometheus() -> None:
    tempo = json_data("tempo")
    assert {key: tempo[key] for key in ("serviceMap", "nodeGraph", "lokiSearch")} == {
        "serviceMap": {"datasourceUid": "prometheus"},
        "nodeGraph": {"enabled": True},
        "lokiSearch": {"datasourceUid": "loki"},
    }
    # traces_service_graph_request_total comes from Tempo's metrics generator, remote-written to Prometheus.
    tempo_config = (ROOT / "stack" / "tempo" / "tempo.yaml").read_text()
    assert "processors: [service-graphs]" in tempo_config
    assert "send_exemplars: true" in tempo_config


def test_alertmanager_datasource_speaks_the_prometheus_alertmanager_api() -> None:
    assert json_data("alertmanager") == {"implementation": "prometheus", "handleGrafanaManagedAlerts": False}


def test_an_unescaped_dollar_in_a_link_template_is_refused() -> None:
    assert grafana_expand({"url": "$${__value.raw}"}) == {"url": "${__value.raw}"}
    with pytest.raises(AssertionError, match=r"loki\.url: .* write `\$\$`"):
        grafana_expand({"url": "${__value.raw}"}, "loki")


def test_dashboard_provider_loads_the_dashboards_json_folder() -> None:
    document = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yaml").read_text())
    assert document["apiVersion"] == 1
    [provider] = document["providers"]
    assert {key: provider[key] for key in ("name", "type", "folder", "allowUiUpdates")} == {
        "name": "otel-correlate",
        "type": "file",
        "folder": "otel-correlate",
        "allowUiUpdates": False,
    }
    folder = repo_path_of(services()["grafana"], provider["options"]["path"])
    assert folder == "dashboards/json"
    assert (ROOT / folder).is_dir()


def test_grafana_finds_both_provisioning_files_where_compose_mounts_them() -> None:
    grafana = services()["grafana"]
    provisioning = repo_path_of(grafana, grafana["environment"]["GF_PATHS_PROVISIONING"])
    assert provisioning is not None
    assert sorted(
        p.relative_to(ROOT / provisioning).as_posix() for p in (ROOT / provisioning).rglob("*.yaml")
    ) == [
        "dashboards/dashboards.yaml",
        "datasources/datasources.yaml",
    ]
