"""Run a dashboard's panel queries through each engine's own HTTP API, the way Grafana would.

Shared by tests/test_dashboards_e2e.py; usable by hand against a running stack:

    .venv/bin/python tests/dashboard_queries.py ORD-1a2b3c4d
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_correlate import _stack

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "dashboards" / "json"
ENGINE_KINDS = ("prometheus", "loki", "tempo")


def engines() -> dict[str, str]:
    """Base URLs of the stack's query engines (``OTEL_CORRELATE_PORT_OFFSET`` applied)."""
    urls = _stack.endpoints()
    return {kind: urls[kind] for kind in ENGINE_KINDS}


#: Grafana's $__rate_interval is max(4 x scrape interval (15 s), step + scrape interval): 60 s at a 15 s step.
RATE_INTERVAL = "1m"
STEP_SECONDS = 15


@dataclass(frozen=True)
class QueryResult:
    """One target of one panel after running it: series (or streams, or traces) returned, or the error."""

    dashboard: str
    panel: str
    ref_id: str
    datasource: str
    query: str
    series: int
    error: str | None

    def describe(self) -> str:
        what = self.error or f"{self.series} series"
        return f"{self.dashboard} / {self.panel} [{self.ref_id}] {self.datasource}: {what}\n    {self.query}"


def substitute(text: str, variables: dict[str, str]) -> str:
    """Replace Grafana variables as Grafana does for the 'All' selection of each variable."""
    text = text.replace("$__rate_interval", RATE_INTERVAL).replace("$__auto", RATE_INTERVAL)
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
    return text


def default_variables(board: dict[str, Any], **overrides: str) -> dict[str, str]:
    """Every templating variable at its 'All' value (allValue) or the override given."""
    values = {}
    for variable in board["templating"]["list"]:
        name = variable["name"]
        values[name] = overrides.get(name, variable.get("allValue") or variable.get("query") or "")
    return values


def _get(url: str, params: dict[str, str]) -> Any:
    request = urllib.request.Request(
        f"{url}?{urllib.parse.urlencode(params)}", headers={"X-Grafana-Org-Id": "1"}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:400]}") from exc


def run_target(target: dict[str, Any], variables: dict[str, str], *, window_seconds: int) -> tuple[str, int]:
    """(query as sent, number of series/streams/traces) for one panel target; raises on a query error."""
    kind = target["datasource"]["uid"]
    now = time.time()
    start = now - window_seconds
    if kind == "prometheus":
        query = substitute(target["expr"], variables)
        if target.get("instant"):
            answer = _get(f"{engines()[kind]}/api/v1/query", {"query": query, "time": f"{now:.3f}"})
        else:
            answer = _get(
                f"{engines()[kind]}/api/v1/query_range",
                {"query": query, "start": f"{start:.3f}", "end": f"{now:.3f}", "step": str(STEP_SECONDS)},
            )
        if answer.get("status") != "success":
            raise RuntimeError(json.dumps(answer)[:400])
        return query, len(answer["data"]["result"])
    if kind == "loki":
        query = substitute(target["expr"], variables)
        answer = _get(
            f"{engines()[kind]}/loki/api/v1/query_range",
            {
                "query": query,
                "start": str(int(start * 1e9)),
                "end": str(int(now * 1e9)),
                "step": str(STEP_SECONDS),
                "limit": "100",
            },
        )
        if answer.get("status") != "success":
            raise RuntimeError(json.dumps(answer)[:400])
        return query, len(answer["data"]["result"])
    if kind == "tempo":
        query = substitute(target["query"], variables)
        answer = _get(
            f"{engines()[kind]}/api/search",
            {
                "q": query,
                "start": str(int(start)),
                "end": str(int(now) + 60),
                "limit": str(target.get("limit", 20)),
            },
        )
        return query, len(answer.get("traces") or [])
    raise ValueError(f"panel target with datasource uid {kind!r}: no engine for it in {sorted(ENGINE_KINDS)}")


def run_dashboard(
    board: dict[str, Any], variables: dict[str, str], *, window_seconds: int = 900
) -> list[QueryResult]:
    """Every target of every panel of ``board``, run once."""
    results = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            try:
                query, series = run_target(target, variables, window_seconds=window_seconds)
                error = None
            except (RuntimeError, OSError) as exc:
                query, series, error = target.get("expr") or target.get("query", ""), 0, str(exc)
            results.append(
                QueryResult(
                    board["uid"],
                    panel["title"],
                    target["refId"],
                    target["datasource"]["uid"],
                    query,
                    series,
                    error,
                )
            )
    return results


def load_dashboards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))]


if __name__ == "__main__":
    order_id = sys.argv[1] if len(sys.argv) > 1 else ""
    for board in load_dashboards():
        for result in run_dashboard(board, default_variables(board, orderId=order_id)):
            print(
                ("ERROR " if result.error else "EMPTY " if not result.series else "ok    ")
                + result.describe()
            )
