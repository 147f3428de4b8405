"""The automated-recovery webhook, over real HTTP on 127.0.0.1 with Alertmanager-shaped payloads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_correlate._recovery import FiringAlert, RecoveryRegistry, RecoveryService, serve

NOW = 1_700_000_000.0
TS = "2023-11-14T22:13:20.000Z"
GROUP = '{}/{severity=~"critical|warning"}:{alertname="ServiceHighErrorRatio", service="orders"}'


def payload(
    status: str = "firing", *, alertname: str = "ServiceHighErrorRatio", group_key: str = GROUP
) -> dict[str, Any]:
    """A webhook body as Alertmanager 0.25 sends it (version 4)."""
    labels = {"alertname": alertname, "job": "orders", "service": "orders", "severity": "critical"}
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "recovery",
        "groupLabels": {"alertname": alertname, "service": "orders"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "s"},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": "s", "description": "d"},
                "startsAt": "2023-11-14T22:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": "a1b2c3",
            }
        ],
    }


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def audit(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Server:
    def __init__(self, service: RecoveryService, url: str, calls: list[FiringAlert]) -> None:
        self.service, self.url, self.calls = service, url, calls


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    calls: list[FiringAlert] = []

    def restart_orders(alert: FiringAlert) -> str:
        calls.append(alert)
        return "restarted orders"

    def broken(alert: FiringAlert) -> str:
        raise RuntimeError("systemctl: unit not found")

    registry = RecoveryRegistry()
    registry.register("ServiceHighErrorRatio", restart_orders)
    registry.register("CircuitBreakerOpen", broken)
    service = RecoveryService(registry, audit_file=tmp_path / "audit.jsonl", clock=lambda: NOW)
    with serve(service, port=0) as http:
        yield Server(service, f"http://127.0.0.1:{http.server_address[1]}", calls)


def record(
    decision: str,
    reason: str,
    *,
    action: str | None = "restart_orders",
    status: str = "firing",
    alertname: str = "ServiceHighErrorRatio",
    group_key: str = GROUP,
) -> dict[str, Any]:
    return {
        "ts": TS,
        "groupKey": group_key,
        "alertname": alertname,
        "service": "orders",
        "fingerprints": ["a1b2c3"],
        "status": status,
        "action": action,
        "decision": decision,
        "reason": reason,
    }


def test_action_runs_exactly_once_per_alert_group_while_firing(server: Server) -> None:
    assert post(server.url + "/alerts", payload())[0] == 200
    assert post(server.url + "/alerts", payload())[0] == 200  # repeat notification of the same group
    assert [(c.alertname, c.group_key, c.labels["service"]) for c in server.calls] == [
        ("ServiceHighErrorRatio", GROUP, "orders")
    ]
    assert audit(server.service.audit_file) == [
        record("ran", "restarted orders"),
        record("skipped", "already ran for this group while firing"),
    ]


def test_another_group_runs_its_own_action(server: Server) -> None:
    other = GROUP.replace("orders", "shop")
    post(server.url + "/alerts", payload())
    status, body = post(server.url + "/alerts", payload(group_key=other))
    assert status == 200
    assert body["decisions"] == [record("ran", "restarted orders", group_key=other)]
    assert len(server.calls) == 2


def test_resolved_group_rearms_the_action(server: Server) -> None:
    post(server.url + "/alerts", payload())
    post(server.url + "/alerts", payload("resolved"))
    post(server.url + "/alerts", payload())
    assert len(server.calls) == 2
    assert audit(server.service.audit_file) == [
        record("ran", "restarted orders"),
        record("rearmed", "group resolved", status="resolved"),
        record("ran", "restarted orders"),
    ]


def test_unknown_alert_is_logged_as_skipped(server: Server) -> None:
    status, body = post(server.url + "/alerts", payload(alertname="OrdersStuckInNew"))
    assert status == 200
    expected = record("skipped", "no action registered", action=None, alertname="OrdersStuckInNew")
    assert body["decisions"] == [expected]
    assert audit(server.service.audit_file) == [expected]
    assert server.calls == []


def test_failing_action_is_audited_and_not_retried(server: Server) -> None:
    post(server.url + "/alerts", payload(alertname="CircuitBreakerOpen"))
    post(server.url + "/alerts", payload(alertname="CircuitBreakerOpen"))
    assert audit(server.service.audit_file) == [
        record(
            "failed",
            "RuntimeError: systemctl: unit not found",
            action="broken",
            alertname="CircuitBreakerOpen",
        ),
        record(
            "skipped",
            "already ran for this group while firing",
            action="broken",
            alertname="CircuitBreakerOpen",
        ),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", r"^body is not JSON"),
        (b"[]", r"^the body must be a JSON object"),
        (
            json.dumps({"status": "firing", "alerts": []}).encode(),
            r"groupKey=None, status='firing', alerts=list$",
        ),
    ],
)
def test_bad_payload_is_400_and_changes_nothing(server: Server, body: bytes, error: str) -> None:
    status, answer = post(server.url + "/alerts", body)
    assert status == 400
    assert re.search(error, answer["error"]), answer
    assert audit(server.service.audit_file) == []
    assert server.calls == []


def test_restart_replays_the_audit_and_does_not_run_again(server: Server, tmp_path: Path) -> None:
    post(server.url + "/alerts", payload())
    calls: list[FiringAlert] = []
    registry = RecoveryRegistry()
    registry.register(
        "ServiceHighErrorRatio", lambda alert: calls.append(alert) or "again", name="restart_orders"
    )
    restarted = RecoveryService(registry, audit_file=server.service.audit_file, clock=lambda: NOW)
    assert restarted.handle(payload()) == [record("skipped", "already ran for this group while firing")]
    assert calls == []


def test_watchdog_endpoint_is_a_dead_mans_switch(server: Server) -> None:
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(server.url + "/watchdog", timeout=5)
    assert missing.value.code == 503
    assert post(server.url + "/watchdog", payload(alertname="Watchdog")) == (200, {"status": "ok"})
    with urllib.request.urlopen(server.url + "/watchdog", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read())["healthy"] is True
    assert audit(server.service.audit_file) == []  # heartbeats are not actions


@pytest.mark.e2e
def test_cli_serve_runs_a_command_action_once(tmp_path: Path) -> None:
    marker, audit_file = tmp_path / "ran.txt", tmp_path / "audit.jsonl"
    command = f"{sys.executable} -c \"import os, pathlib; pathlib.Path({str(marker)!r}).open('a').write(os.environ['OTEL_CORRELATE_ALERT_NAME'] + chr(10))\""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_correlate._recovery",
            "serve",
            "--port",
            "0",
            "--audit-file",
            str(audit_file),
            "--action",
            f"ServiceHighErrorRatio={command}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/alerts", line)
        assert match, line
        url = f"http://127.0.0.1:{match.group(1)}/alerts"
        assert post(url, payload())[0] == 200
        assert post(url, payload())[0] == 200
        assert marker.read_text() == "ServiceHighErrorRatio\n"
        decisions = [(r["decision"], r["action"]) for r in audit(audit_file)]
        assert decisions == [("ran", command), ("skipped", command)]
    finally:
        process.terminate()
        process.wait(timeout=10)
