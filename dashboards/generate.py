"""Generate the Grafana dashboards in dashboards/json/ from code.

    .venv/bin/python dashboards/generate.py          # rewrite dashboards/json/*.json
    .venv/bin/python dashboards/generate.py --check  # exit 1 when a committed file differs

Plain dictionaries in Grafana's dashboard JSON model (schemaVersion 39), no
SDK: the model is stable and a reviewer reads the queries here in one place.
tests/test_dashboards.py fails when the committed JSON drifts from this file,
and tests/test_dashboards_e2e.py runs every query below against the real stack.

Conventions every panel follows (the tests check them):
- a unit and a description;
- data source uids from dashboards/provisioning/datasources/datasources.yaml;
- ``rate``/``irate`` over ``$__rate_interval``; windows such as ``[1h]`` or
  ``[1d]`` appear only in ``increase`` where the panel means exactly that window;
- ``$service`` (Prometheus ``job`` = OTel service.name, Loki ``service_name``)
  and ``$environment`` (``deployment.environment.name``). Application metrics
  arrive by remote write without resource attributes, so the environment is
  known only on ``target_info``: it filters the service list (chained
  variables) and the Loki and Tempo queries, which carry it directly.

CPU and memory of each service process come from the distro's process metrics
(``process_cpu_time_seconds_total``, ``process_memory_usage_bytes``, one series
per worker ``instance``); the SRE dashboard adds the collector's own and the
scraped engines' ``process_*`` metrics.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
JSON_DIR = HERE / "json"

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
TEMPO = {"type": "tempo", "uid": "tempo"}

SERVICE = '"$service"'
HTTP = "http_server_request_duration_seconds"
ENV_STREAM = 'deployment_environment_name=~"$environment"'
LOKI_SERVICE = f'service_name=~"$service", {ENV_STREAM}'

Panel = dict[str, Any]


# --- targets -------------------------------------------------------------------------------------


def prom(expr: str, legend: str = "", *, exemplar: bool = False, instant: bool = False) -> dict[str, Any]:
    """A Prometheus target; ``exemplar`` asks Grafana to draw exemplars (trace ids) on it."""
    target: dict[str, Any] = {
        "datasource": PROMETHEUS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "exemplar": exemplar,
    }
    if instant:
        target["format"] = "table"
    return target


def loki(expr: str, legend: str = "", *, kind: str = "range") -> dict[str, Any]:
    """A Loki target (a log query for logs panels, a metric query for time series)."""
    return {"datasource": LOKI, "editorMode": "code", "expr": expr, "legendFormat": legend, "queryType": kind}


def tempo(traceql: str, *, limit: int = 20) -> dict[str, Any]:
    """A Tempo TraceQL search target."""
    return {
        "datasource": TEMPO,
        "queryType": "traceql",
        "query": traceql,
        "limit": limit,
        "tableType": "traces",
    }


# --- data links ----------------------------------------------------------------------------------


_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]+\}|\$\w+")


def _explore(datasource: dict[str, str], query: dict[str, Any]) -> str:
    """A Grafana Explore URL; Grafana variables (``$service``, ``${__field.labels.job}``) stay unencoded.

    Grafana interpolates a data link's URL before opening it, so only the JSON
    around the variables is percent-encoded.
    """
    pane = {
        "datasource": datasource["uid"],
        "queries": [{"refId": "A", "datasource": datasource, **query}],
        "range": {"from": "${__from}", "to": "${__to}"},
    }
    text = json.dumps({"a": pane}, separators=(",", ":"))
    variables = _GRAFANA_VARIABLE.findall(text)
    for index, variable in enumerate(variables):
        text = text.replace(variable, f"GRAFANAVAR{index}X", 1)
    encoded = urllib.parse.quote(text, safe="")
    for index, variable in enumerate(variables):
        encoded = encoded.replace(f"GRAFANAVAR{index}X", variable, 1)
    return f"/explore?schemaVersion=1&orgId=1&panes={encoded}"


def trace_link(traceql: str, title: str = "Traces in Tempo") -> dict[str, Any]:
    """A data link to a TraceQL search in Tempo."""
    url = _explore(TEMPO, {"queryType": "traceql", "query": traceql, "limit": 20})
    return {"title": title, "url": url, "targetBlank": False}


def logs_link(logql: str, title: str = "Logs in Loki") -> dict[str, Any]:
    """A data link to a LogQL query in Loki."""
    url = _explore(LOKI, {"expr": logql, "queryType": "range", "editorMode": "code"})
    return {"title": title, "url": url, "targetBlank": False}


# ${__field.labels.job} is the clicked series' service (Prometheus job).
SERVICE_TRACES = trace_link('{ resource.service.name = "${__field.labels.job}" }')
SERVICE_ERROR_TRACES = trace_link(
    '{ resource.service.name = "${__field.labels.job}" && status = error }', "Error traces in Tempo"
)
SERVICE_SLOW_TRACES = trace_link(
    '{ resource.service.name = "${__field.labels.job}" && kind = server } | select(duration)',
    "Traces in Tempo",
)
SERVICE_LOGS = logs_link('{service_name="${__field.labels.job}"}')
SERVICE_ERROR_LOGS = logs_link(
    '{service_name="${__field.labels.job}"} | detected_level=~"(?i)(error|critical|fatal)"',
    "Error logs in Loki",
)
CORRELATION_LINKS = [SERVICE_TRACES, SERVICE_LOGS]


# --- panels --------------------------------------------------------------------------------------


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str,
    width: int = 12,
    height: int = 8,
    links: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    datasource: dict[str, str] = PROMETHEUS,
) -> Panel:
    """One panel; positions and ids are assigned by :func:`dashboard`."""
    field_defaults: dict[str, Any] = {"unit": unit, "links": links or []}
    field_defaults.update(defaults or {})
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "targets": [{"refId": chr(ord("A") + i), **t} for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": field_defaults, "overrides": []},
        "options": options or {},
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
    }


def timeseries(title: str, description: str, targets: list[dict[str, Any]], **kw: Any) -> Panel:
    kw.setdefault(
        "options", {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    )
    return panel("timeseries", title, description, targets, **kw)


def stat(title: str, description: str, targets: list[dict[str, Any]], **kw: Any) -> Panel:
    kw.setdefault("width", 6)
    kw.setdefault("height", 5)
    kw.setdefault("options", {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"})
    return panel("stat", title, description, targets, **kw)


def threshold_steps(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def mappings(values: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Value mappings: raw value -> (text, color)."""
    return [
        {
            "type": "value",
            "options": {
                raw: {"text": text, "color": color, "index": i}
                for i, (raw, (text, color)) in enumerate(values.items())
            },
        }
    ]


# --- variables and dashboards --------------------------------------------------------------------


def query_variable(name: str, label: str, query: str, *, all_value: str) -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": PROMETHEUS,
        "query": {"qryType": 1, "query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


ENVIRONMENT_VAR = query_variable(
    "environment", "Environment", "label_values(target_info, deployment_environment_name)", all_value=".*"
)
# ".+" (not ".*") for All: a Loki stream selector needs one matcher that cannot match the empty string.
SERVICE_VAR = query_variable(
    "service",
    "Service",
    'label_values(target_info{deployment_environment_name=~"$environment"}, job)',
    all_value=".+",
)
ORDER_ID_VAR = {
    "type": "textbox",
    "name": "orderId",
    "label": "Order id",
    "description": "An orderId such as ORD-1a2b3c4d: its log lines and its trace side by side.",
    "query": "",
    "current": {"text": "", "value": ""},
    "hide": 0,
}


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Panel],
    *,
    extra_vars: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """A dashboard with the common variables, 30 s refresh, and panels laid out left to right."""
    x = y = row_height = 0
    laid_out = []
    for index, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append({**p, "id": index, "gridPos": {"h": h, "w": w, "x": x, "y": y}})
        x += w
        row_height = max(row_height, h)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["otel-correlate"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m"]},
        "schemaVersion": 39,
        "version": 1,
        "templating": {"list": [ENVIRONMENT_VAR, SERVICE_VAR, *extra_vars]},
        "annotations": {"list": []},
        "links": [
            {
                "title": "otel-correlate dashboards",
                "type": "dashboards",
                "tags": ["otel-correlate"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": laid_out,
    }


# --- 1 service overview --------------------------------------------------------------------------


def _rate(metric: str, matchers: str = "", by: str = "job") -> str:
    sel = f"job=~{SERVICE}" + (f", {matchers}" if matchers else "")
    return f"sum by ({by}) (rate({metric}{{{sel}}}[$__rate_interval]))"


def service_overview() -> dict[str, Any]:
    count = f"{HTTP}_count"
    errors = _rate(count, 'http_response_status_code=~"5.."')
    quantiles = [
        prom(
            f"histogram_quantile({q}, sum by (job, le) (rate({HTTP}_bucket{{job=~{SERVICE}}}[$__rate_interval])))",
            f"{{{{job}}}} p{int(q * 100)}",
            exemplar=True,
        )
        for q in (0.5, 0.95, 0.99)
    ]
    panels = [
        timeseries(
            "Request rate",
            "HTTP server requests per second by service (http.server.request.duration count).",
            [prom(_rate(count), "{{job}}")],
            unit="reqps",
            width=8,
            links=CORRELATION_LINKS,
        ),
        timeseries(
            "Error ratio (5xx)",
            "Share of requests answered 5xx, by service. ServiceHighErrorRatio pages above 5 % for 5 minutes. "
            "A service without 5xx shows 0, not an empty panel.",
            [
                prom(
                    f"({errors} or {_rate(count)} * 0) / {_rate(count)}",
                    "{{job}}",
                )
            ],
            unit="percentunit",
            width=8,
            links=[SERVICE_ERROR_TRACES, SERVICE_ERROR_LOGS],
            defaults={"min": 0, "thresholds": threshold_steps(("green", None), ("red", 0.05))},
        ),
        timeseries(
            "Latency p50 / p95 / p99",
            "Request duration quantiles by service from the HTTP server histogram. Exemplars (dots) open the "
            "trace of a request in that bucket. ServiceHighLatencyP95 warns above 500 ms.",
            quantiles,
            unit="s",
            width=8,
            links=[SERVICE_SLOW_TRACES, SERVICE_LOGS],
        ),
        timeseries(
            "In-flight requests",
            "Requests being served right now (http.server.active_requests), by service.",
            [prom(f"sum by (job) (http_server_active_requests{{job=~{SERVICE}}})", "{{job}}")],
            unit="short",
            width=8,
            links=CORRELATION_LINKS,
        ),
        timeseries(
            "Requests by route and status",
            "Requests per second by service, route and status code.",
            [
                prom(
                    _rate(count, by="job, http_route, http_response_status_code"),
                    "{{job}} {{http_route}} {{http_response_status_code}}",
                )
            ],
            unit="reqps",
            width=16,
            links=CORRELATION_LINKS,
        ),
        timeseries(
            "CPU per process",
            "CPU used by each service process (worker), in cores: user plus system time from the distro's "
            "process.cpu.time metric.",
            [
                prom(
                    'sum by (job, instance) (rate(process_cpu_time_seconds_total{job=~"$service"}[$__rate_interval]))',
                    "{{job}} {{instance}}",
                ),
            ],
            unit="percentunit",
            links=CORRELATION_LINKS,
        ),
        timeseries(
            "Memory per process (RSS)",
            "Resident memory of each service process (worker), from the distro's process.memory.usage metric.",
            [
                prom(
                    'sum by (job, instance) (process_memory_usage_bytes{job=~"$service"})',
                    "{{job}} {{instance}}",
                ),
            ],
            unit="bytes",
            links=CORRELATION_LINKS,
        ),
        panel(
            "logs",
            "Error logs",
            "Error, critical and fatal log lines of the selected services; each line's trace_id opens its trace.",
            [loki(f'{{{LOKI_SERVICE}}} | detected_level=~"(?i)(error|critical|fatal)"')],
            unit="none",
            datasource=LOKI,
            options={
                "showTime": True,
                "wrapLogMessage": True,
                "sortOrder": "Descending",
                "enableLogDetails": True,
            },
            links=[SERVICE_TRACES],
        ),
        panel(
            "table",
            "Error traces",
            "Recent traces with an error span in the selected services (TraceQL); a trace id opens the trace.",
            [tempo('{ resource.service.name =~ "$service" && status = error }')],
            unit="none",
            datasource=TEMPO,
            links=[SERVICE_LOGS],
        ),
    ]
    return dashboard(
        "otel-correlate-service-overview",
        "otel-correlate / Service overview",
        "Golden signals per service: traffic, errors, latency, saturation.",
        panels,
    )


# --- 2 orders ------------------------------------------------------------------------------------


NOTIFY_FAILED_LOGS = logs_link(
    '{service_name="notifications"} | detected_level=~"(?i)(warn|warning|error|critical)"',
    "Failure logs in Loki",
)
NOTIFY_FAILED_TRACES = trace_link(
    '{ resource.service.name = "notifications" && status = error }', "Failed notification traces in Tempo"
)


def orders() -> dict[str, Any]:
    ok_total = f"sum(increase(notifications_total{{job=~{SERVICE}}}[1h]))"
    failed_total = f'sum(increase(notifications_total{{job=~{SERVICE}, outcome="failed"}}[1h]))'
    panels = [
        stat(
            "Orders created per day",
            "Orders created during the last 24 hours (increase of orders_created_total over 1d).",
            [prom(f"sum(increase(orders_created_total{{job=~{SERVICE}}}[1d]))", "orders")],
            unit="short",
            links=CORRELATION_LINKS,
        ),
        stat(
            "Orders stuck in new (> 24 h)",
            "Orders in status new for more than 24 hours (orders_stuck_new). OrdersStuckInNew warns above 0.",
            [prom(f"sum(orders_stuck_new{{job=~{SERVICE}}})", "stuck")],
            unit="short",
            defaults={"thresholds": threshold_steps(("green", None), ("orange", 1))},
            links=[logs_link('{service_name="orders"} |= "new"', "Order logs in Loki"), SERVICE_TRACES],
        ),
        stat(
            "Notification failures (last hour)",
            "Notifications that failed during the last hour. NotificationFailuresHigh pages at 10.",
            [prom(f"{failed_total} or vector(0)", "failed")],
            unit="short",
            defaults={"thresholds": threshold_steps(("green", None), ("orange", 1), ("red", 10))},
            links=[NOTIFY_FAILED_TRACES, NOTIFY_FAILED_LOGS],
        ),
        stat(
            "Notification success (last hour)",
            "Share of notifications that did not fail over the last hour; target 99 % (warning below), "
            "critical below 95 %.",
            [prom(f"1 - ({failed_total} or vector(0)) / {ok_total}", "success")],
            unit="percentunit",
            defaults={"thresholds": threshold_steps(("red", None), ("orange", 0.95), ("green", 0.99))},
            links=[NOTIFY_FAILED_TRACES, NOTIFY_FAILED_LOGS],
        ),
        timeseries(
            "Notification success rate vs 99 % target",
            "Rolling one-hour notification success rate (as NotificationSuccessRateLow evaluates it) against "
            "the 99 % target.",
            [
                prom(
                    f'1 - (sum by (job) (increase(notifications_total{{job=~{SERVICE}, outcome="failed"}}[1h])) '
                    f"or sum by (job) (increase(notifications_total{{job=~{SERVICE}}}[1h])) * 0) "
                    f"/ sum by (job) (increase(notifications_total{{job=~{SERVICE}}}[1h]))",
                    "{{job}} success",
                ),
                prom("vector(0.99)", "target 99 %"),
            ],
            unit="percentunit",
            links=[NOTIFY_FAILED_TRACES, NOTIFY_FAILED_LOGS],
        ),
        timeseries(
            "Notifications by channel and outcome",
            "Notifications per second by channel and outcome (sent, failed, ...).",
            [prom(_rate("notifications_total", by="job, channel, outcome"), "{{channel}} {{outcome}}")],
            unit="ops",
            links=[NOTIFY_FAILED_TRACES, NOTIFY_FAILED_LOGS],
        ),
        timeseries(
            "Order status changes (from → to)",
            "Status transitions per second (orders_status_changes_total by from and to).",
            [prom(_rate("orders_status_changes_total", by="from, to"), "{{from}} → {{to}}")],
            unit="ops",
            links=CORRELATION_LINKS,
        ),
        timeseries(
            "Orders by status",
            "Orders currently in each status (orders_by_status).",
            [prom(f"sum by (status) (orders_by_status{{job=~{SERVICE}}})", "{{status}}")],
            unit="short",
            links=CORRELATION_LINKS,
        ),
        panel(
            "state-timeline",
            "Circuit-breaker state",
            "State of every circuit breaker: closed (0), half-open (1), open (2). CircuitBreakerOpen warns "
            "after one minute open.",
            [prom(f"max by (job, breaker) (circuit_breaker_state{{job=~{SERVICE}}})", "{{job}} {{breaker}}")],
            unit="none",
            defaults={
                "mappings": mappings(
                    {"0": ("closed", "green"), "1": ("half-open", "orange"), "2": ("open", "red")}
                ),
                "color": {"mode": "thresholds"},
                "thresholds": threshold_steps(("green", None), ("orange", 1), ("red", 2)),
            },
            links=[NOTIFY_FAILED_TRACES, NOTIFY_FAILED_LOGS],
        ),
        timeseries(
            "Retries and dead letters",
            "Notification retries and messages given up for good (dead letters) per second. Every dead letter "
            "is also a CRITICAL DEAD_LETTER log line (DeadLetterLogged pages).",
            [
                prom(_rate("notification_retries_total"), "{{job}} retries"),
                prom(_rate("dead_letters_total"), "{{job}} dead letters"),
            ],
            unit="ops",
            links=[
                logs_link('{service_name="${__field.labels.job}"} |= "DEAD_LETTER"', "Dead letters in Loki"),
                SERVICE_TRACES,
            ],
        ),
        panel(
            "logs",
            "Logs of order $orderId",
            "Every log line of the order in the orderId variable, in every selected service (orderId is Loki "
            "structured metadata). trace_id opens the trace.",
            [loki(f'{{{LOKI_SERVICE}}} | orderId="$orderId"')],
            unit="none",
            height=12,
            datasource=LOKI,
            options={
                "showTime": True,
                "wrapLogMessage": True,
                "sortOrder": "Ascending",
                "enableLogDetails": True,
            },
            links=[trace_link('{ span.orderId = "$orderId" }', "Order trace in Tempo")],
        ),
        panel(
            "traces",
            "Trace of order $orderId",
            "The traces whose spans carry the orderId in the variable (TraceQL span.orderId), across services.",
            [tempo('{ span.orderId = "$orderId" }')],
            unit="none",
            height=12,
            datasource=TEMPO,
            links=[logs_link('{service_name=~".+"} | orderId="$orderId"', "Order logs in Loki")],
        ),
    ]
    return dashboard(
        "otel-correlate-orders",
        "otel-correlate / Orders",
        "Order and notification KPIs; pick an orderId to see its logs and trace side by side.",
        panels,
        extra_vars=(ORDER_ID_VAR,),
    )


# --- 3 SRE troubleshooting -----------------------------------------------------------------------


def sre() -> dict[str, Any]:
    count = f"{HTTP}_count"
    up_mappings = mappings({"0": ("down", "red"), "1": ("up", "green")})
    panels = [
        panel(
            "heatmap",
            "4xx / 5xx by service and status code",
            "Client and server errors per second; one row per service and status code.",
            [
                prom(
                    _rate(count, 'http_response_status_code=~"[45].."', by="job, http_response_status_code"),
                    "{{job}} {{http_response_status_code}}",
                )
            ],
            unit="reqps",
            width=24,
            options={
                "calculate": False,
                "yAxis": {"axisPlacement": "left"},
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "cellGap": 1,
                "tooltip": {"show": True, "yHistogram": False},
                "legend": {"show": True},
            },
            links=[SERVICE_ERROR_TRACES, SERVICE_ERROR_LOGS],
        ),
        panel(
            "state-timeline",
            "Components up / down",
            "Scraped stack components (collector, Prometheus, Loki, Tempo, Alertmanager) by `up`; services, "
            "which push and have no `up`, are up while their target_info arrives (down when it sent during the "
            "last hour but not in the last 2 minutes, as ServiceDown evaluates it).",
            [
                prom("max by (job) (up)", "{{job}}"),
                prom(
                    f"max by (job) (present_over_time(target_info{{job=~{SERVICE}, {ENV_STREAM}}}[2m])) "
                    f"or max by (job) (present_over_time(target_info{{job=~{SERVICE}, {ENV_STREAM}}}[1h])) * 0",
                    "{{job}}",
                ),
            ],
            unit="bool_on_off",
            width=24,
            defaults={
                "mappings": up_mappings,
                "color": {"mode": "thresholds"},
                "thresholds": threshold_steps(("red", None), ("green", 1)),
            },
            links=CORRELATION_LINKS,
        ),
        timeseries(
            "CPU by component",
            "CPU in cores of the services, the collector and the scraped engines.",
            [
                prom("sum by (job) (rate(process_cpu_time_seconds_total[$__rate_interval]))", "{{job}}"),
                prom("sum by (job) (rate(otelcol_process_cpu_seconds[$__rate_interval]))", "{{job}}"),
                prom("sum by (job) (rate(process_cpu_seconds_total[$__rate_interval]))", "{{job}}"),
            ],
            unit="percentunit",
            width=8,
        ),
        timeseries(
            "Memory by component",
            "Resident memory of the services, the collector and the scraped engines.",
            [
                prom("sum by (job) (process_memory_usage_bytes)", "{{job}}"),
                prom("sum by (job) (otelcol_process_memory_rss)", "{{job}}"),
                prom("sum by (job) (process_resident_memory_bytes)", "{{job}}"),
            ],
            unit="bytes",
            width=8,
        ),
        timeseries(
            "Open file descriptors",
            "Open file descriptors of the scraped engines against their limit.",
            [prom("sum by (job) (process_open_fds) / sum by (job) (process_max_fds)", "{{job}}")],
            unit="percentunit",
            width=8,
        ),
        panel(
            "table",
            "Alerts firing now",
            "Prometheus alerts firing now (the ALERTS series; Watchdog always fires). Loki-ruler alerts such as "
            "DeadLetterLogged are not in ALERTS: see Alertmanager (datasource alertmanager) and the panel beside.",
            [prom('sum by (alertname, severity, service) (ALERTS{alertstate="firing"})', instant=True)],
            unit="short",
            width=12,
            options={"showHeader": True},
        ),
        timeseries(
            "Error log lines by service",
            "Error, critical and fatal log lines per interval by service: what the Loki ruler's ErrorLogSpike "
            "and DeadLetterLogged count.",
            [
                loki(
                    f"sum by (service_name) (count_over_time({{{LOKI_SERVICE}}} "
                    f'| detected_level=~"(?i)(error|critical|fatal)" [$__auto]))',
                    "{{service_name}}",
                )
            ],
            unit="short",
            width=12,
            datasource=LOKI,
            links=[
                logs_link(
                    '{service_name="${__field.labels.service_name}"} | detected_level=~"(?i)(error|critical|fatal)"'
                ),
                trace_link('{ resource.service.name = "${__field.labels.service_name}" && status = error }'),
            ],
        ),
        timeseries(
            "Service graph requests",
            "Requests per second between services, from Tempo's metrics generator (traces_service_graph_*).",
            [
                prom(
                    "sum by (client, server) (rate(traces_service_graph_request_total[$__rate_interval]))",
                    "{{client}} → {{server}}",
                ),
                prom(
                    "sum by (client, server) (rate(traces_service_graph_request_failed_total[$__rate_interval]))",
                    "{{client}} → {{server}} failed",
                ),
            ],
            unit="reqps",
            links=[
                trace_link('{ resource.service.name = "${__field.labels.server}" }'),
                logs_link('{service_name="${__field.labels.server}"}'),
            ],
        ),
        timeseries(
            "Span error rate by service",
            "Spans per second with status error, by service (collector span_metrics connector).",
            [
                prom(
                    'sum by (service_name) (rate(traces_span_metrics_calls_total{service_name=~"$service", '
                    'status_code="STATUS_CODE_ERROR"}[$__rate_interval]))',
                    "{{service_name}}",
                )
            ],
            unit="ops",
            links=[
                trace_link('{ resource.service.name = "${__field.labels.service_name}" && status = error }'),
                logs_link('{service_name="${__field.labels.service_name}"}'),
            ],
        ),
    ]
    return dashboard(
        "otel-correlate-sre",
        "otel-correlate / SRE troubleshooting",
        "Where it hurts: errors by service and status, component health, resources, alerts firing now.",
        panels,
    )


# --- 4 deployment health -------------------------------------------------------------------------


def deployment_health() -> dict[str, Any]:
    status_mappings = mappings({"0": ("fail", "red"), "0.5": ("warn", "orange"), "1": ("pass", "green")})
    status_defaults = {
        "mappings": status_mappings,
        "color": {"mode": "thresholds"},
        "thresholds": threshold_steps(("red", None), ("orange", 0.5), ("green", 1)),
        "min": 0,
        "max": 1,
    }
    duration = "health_check_duration_seconds"
    panels = [
        stat(
            "Overall health",
            "Each service's overall health (health_status): pass 1, warn 0.5, fail 0.",
            [prom(f"min by (job) (health_status{{job=~{SERVICE}}})", "{{job}}")],
            unit="none",
            width=24,
            height=4,
            defaults=status_defaults,
            links=CORRELATION_LINKS,
        ),
        panel(
            "state-timeline",
            "Check status over time",
            "Every health check's status over time (health_check_status): pass, warn, fail. Critical checks "
            "fail the deployment; DeploymentHealthDegraded warns on warn and pages on fail.",
            [
                prom(
                    f"min by (job, check, critical) (health_check_status{{job=~{SERVICE}}})",
                    "{{job}} {{check}}",
                )
            ],
            unit="none",
            width=24,
            height=10,
            defaults=status_defaults,
            links=CORRELATION_LINKS,
        ),
        timeseries(
            "Check response time (p95)",
            "95th percentile duration of each health check.",
            [
                prom(
                    f"histogram_quantile(0.95, sum by (job, check, le) "
                    f"(rate({duration}_bucket{{job=~{SERVICE}}}[$__rate_interval])))",
                    "{{job}} {{check}} p95",
                    exemplar=True,
                )
            ],
            unit="s",
            links=CORRELATION_LINKS,
        ),
        timeseries(
            "Check response time (average)",
            "Average duration of each health check.",
            [
                prom(
                    f"{_rate(duration + '_sum', by='job, check')} / {_rate(duration + '_count', by='job, check')}",
                    "{{job}} {{check}}",
                )
            ],
            unit="s",
            links=CORRELATION_LINKS,
        ),
    ]
    return dashboard(
        "otel-correlate-deployment-health",
        "otel-correlate / Deployment health",
        "The health checks of every deployment: status and response time over time.",
        panels,
    )


# --- 5 the collector -----------------------------------------------------------------------------


SIGNALS = {"spans": "traces", "metric_points": "metrics", "log_records": "logs"}
# The collector's own logs go to its log file (otel-correlate stack logs collector), not
# through itself: the links show what flows through the pipeline.
COLLECTOR_LOGS = logs_link('{service_name=~".+"}', "Logs through the collector in Loki")
PIPELINE_TRACES = trace_link('{ resource.service.name =~ ".+" }', "Traces through the collector in Tempo")
COLLECTOR_LINKS = [PIPELINE_TRACES, COLLECTOR_LOGS]


def _per_signal(metric: str, by: str = "receiver") -> list[dict[str, Any]]:
    return [
        prom(
            f"sum by ({by}) (rate({metric}_{item}[$__rate_interval]))",
            f"{signal} {{{{{by}}}}}",
        )
        for item, signal in SIGNALS.items()
    ]


def collector() -> dict[str, Any]:
    dropped = (
        "sum by (processor, otel_signal) (rate(otelcol_processor_incoming_items[$__rate_interval]) "
        "- rate(otelcol_processor_outgoing_items[$__rate_interval]))"
    )
    enqueue_failed = (
        'sum by (exporter) (rate({__name__=~"otelcol_exporter_enqueue_failed_(spans|metric_points|log_records)"}'
        "[$__rate_interval])) or sum by (exporter) "
        '(rate({__name__=~"otelcol_exporter_sent_(spans|metric_points|log_records)"}[$__rate_interval])) * 0'
    )
    send_failed = (
        'sum by (exporter) (rate({__name__=~"otelcol_exporter_send_failed_(spans|metric_points|log_records)"}'
        "[$__rate_interval])) or sum by (exporter) "
        '(rate({__name__=~"otelcol_exporter_sent_(spans|metric_points|log_records)"}[$__rate_interval])) * 0'
    )
    panels = [
        timeseries(
            "Accepted items per signal",
            "Spans, metric points and log records the receivers accepted per second.",
            _per_signal("otelcol_receiver_accepted"),
            unit="cps",
            links=COLLECTOR_LINKS,
        ),
        timeseries(
            "Refused items per signal",
            "Items the receivers refused per second (memory limiter or a full pipeline); clients may lose "
            "them. OtelCollectorRefusingData warns above 0 for 5 minutes.",
            _per_signal("otelcol_receiver_refused"),
            unit="cps",
            links=COLLECTOR_LINKS,
        ),
        timeseries(
            "Dropped items",
            "Items lost inside the collector: a processor's incoming minus outgoing items per signal, and "
            "batches an exporter could not enqueue (0 while none failed).",
            [
                prom(dropped, "{{processor}} {{otel_signal}}"),
                prom(enqueue_failed, "enqueue failed {{exporter}}"),
            ],
            unit="cps",
            links=COLLECTOR_LINKS,
        ),
        timeseries(
            "Export failures",
            "Items per second an exporter failed to send after retries, by exporter (0 while none failed).",
            [prom(send_failed, "{{exporter}}")],
            unit="cps",
            links=COLLECTOR_LINKS,
        ),
        timeseries(
            "Queue size vs capacity",
            "Batches waiting in each exporter's sending queue against its capacity. "
            "OtelCollectorQueueNearlyFull warns above 80 %.",
            [
                prom("max by (exporter, data_type) (otelcol_exporter_queue_size)", "{{exporter}} size"),
                prom(
                    "max by (exporter, data_type) (otelcol_exporter_queue_capacity)", "{{exporter}} capacity"
                ),
            ],
            unit="short",
            links=COLLECTOR_LINKS,
        ),
        timeseries(
            "Queue fill",
            "Queue size divided by capacity, per exporter.",
            [
                prom(
                    "max by (exporter, data_type) (otelcol_exporter_queue_size / otelcol_exporter_queue_capacity)",
                    "{{exporter}}",
                )
            ],
            unit="percentunit",
            defaults={"max": 1, "thresholds": threshold_steps(("green", None), ("red", 0.8))},
            links=COLLECTOR_LINKS,
        ),
        timeseries(
            "Sent items per signal",
            "Items the exporters delivered per second.",
            _per_signal("otelcol_exporter_sent", by="exporter"),
            unit="cps",
            links=COLLECTOR_LINKS,
        ),
        timeseries(
            "Collector CPU and memory",
            "The collector process' CPU (cores) and resident memory.",
            [
                prom("sum by (job) (rate(otelcol_process_cpu_seconds[$__rate_interval]))", "cpu {{job}}"),
                prom("sum by (job) (otelcol_process_memory_rss)", "rss {{job}}"),
            ],
            unit="percentunit",
            defaults={},
            links=COLLECTOR_LINKS,
        ),
    ]
    # Memory is bytes: give its series its own unit.
    panels[-1]["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byFrameRefID", "options": "B"},
            "properties": [
                {"id": "unit", "value": "bytes"},
                {"id": "custom.axisPlacement", "value": "right"},
            ],
        }
    ]
    return dashboard(
        "otel-correlate-collector",
        "otel-correlate / Collector",
        "The telemetry pipeline itself: what the collector accepts, refuses, drops, queues and fails to export.",
        panels,
    )


DASHBOARDS = (service_overview, orders, sre, deployment_health, collector)


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard, exactly as committed."""
    out = {}
    for build in DASHBOARDS:
        board = build()
        out[f"{board['uid']}.json"] = json.dumps(board, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    return out


def main(argv: list[str]) -> int:
    rendered = render()
    if "--check" in argv:
        stale = [
            name
            for name, text in rendered.items()
            if not (JSON_DIR / name).is_file() or (JSON_DIR / name).read_text() != text
        ]
        extra = sorted({p.name for p in JSON_DIR.glob("*.json")} - set(rendered))
        for name in stale + extra:
            print(
                f"dashboards/json/{name} is out of date; run: .venv/bin/python dashboards/generate.py",
                file=sys.stderr,
            )
        return 1 if stale or extra else 0
    JSON_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (JSON_DIR / name).write_text(text)
    print(f"wrote {len(rendered)} dashboards to {JSON_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
