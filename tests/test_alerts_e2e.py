"""Alerts end to end on the real stack: rule -> Alertmanager -> the recovery webhook -> its action, once.

What is real: the demo services under opentelemetry-instrument, our collector,
the stack's Prometheus (holding the data), the stack's Loki and its ruler with
the committed alerts/loki rules, the stack's Alertmanager with the committed
stack/alertmanager/alertmanager.yml (which sends every critical/warning alert
to http://127.0.0.1:9095/alerts), and the recovery service started here with
the real CLI (``python -m otel_correlate._recovery serve --port 9095``).

What is shortened, and why: ServiceHighErrorRatio waits ``for: 5m`` over
``rate(...[5m])``, too slow for a test, and the committed thresholds must not
change. So the test starts a SECOND Prometheus (Debian's binary, on a free
loopback port, own temporary TSDB, nothing scraped) that reads the stack
Prometheus' data by remote_read (``read_recent: true``,
``filter_external_labels: false``), evaluates every 5 s a
copy of that one rule from alerts/services.yml in which only ``for: 5m`` became
``for: 30s`` and every ``[5m]`` range became ``[1m]`` - expression, threshold
(5 %), labels and annotations are the committed ones - and sends its alerts to
the stack's Alertmanager. Its external label ``stack="otel-correlate-alert-e2e"``
tells its alerts apart from the stack Prometheus' in the Alertmanager API.
Nothing is shortened for the Loki rule (no ``for``; the ruler evaluates every
15 s). Resolution is asserted in Alertmanager's API (the alert leaves the
active set) rather than at the webhook: Alertmanager sends a group's resolved
notification only at the next ``group_interval`` (5 m), which the test does
not wait for.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from otel_correlate import _stack
from otel_correlate._demo import demo_services
from otel_correlate._procs import free_port, wait_until

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
#: Where stack/alertmanager/alertmanager.yml sends critical and warning alerts (the launcher offsets it too).
RECOVERY_PORT = 9095 + _stack.port_offset()
#: Unique per run: Alertmanager remembers what it already notified (its notification log survives in
#: a reused state dir), so an alert with the same labels as an earlier run's would not be sent again.
TEST_STACK_LABEL = f"otel-correlate-alert-e2e-{uuid.uuid4().hex[:8]}"
ERROR_RATIO_GROUP = '{}/{severity=~"critical|warning"}:{alertname="ServiceHighErrorRatio", service="orders"}'


def shortened_error_ratio_rule() -> dict[str, Any]:
    """alerts/services.yml's ServiceHighErrorRatio with only ``for`` and the range windows shortened."""
    document = yaml.safe_load((ROOT / "alerts" / "services.yml").read_text())
    [rule] = [r for g in document["groups"] for r in g["rules"] if r.get("alert") == "ServiceHighErrorRatio"]
    assert rule["for"] == "5m" and rule["expr"].count("[5m]") == 2, (
        "the committed rule changed; update this test"
    )
    return {**rule, "for": "30s", "expr": rule["expr"].replace("[5m]", "[1m]")}


@pytest.fixture(scope="module")
def recovery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The real recovery service on :9095 with actions that append the alert's labels to a marker file."""
    folder = tmp_path_factory.mktemp("recovery")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", RECOVERY_PORT)) == 0:
            pytest.fail(f"127.0.0.1:{RECOVERY_PORT} is taken; stop the other recovery webhook first")
    actions = []
    for alertname in ("ServiceHighErrorRatio", "DeadLetterLogged"):
        marker = folder / f"{alertname}.marker"
        command = (
            f'sh -c \'printf "%s\\n" "$OTEL_CORRELATE_ALERT_LABELS" >> {marker}; echo recovered {alertname}\''
        )
        actions += ["--action", f"{alertname}={command}"]
    log = (folder / "recovery.log").open("w")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "otel_correlate._recovery", "serve", "--port", str(RECOVERY_PORT)),
            *("--audit-file", str(folder / "audit.jsonl"), *actions),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: _ok(f"http://127.0.0.1:{RECOVERY_PORT}/-/healthy"),
            timeout=20,
            interval=0.2,
            what="the recovery webhook to listen",
        )
        yield folder
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def fast_prometheus(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second Prometheus evaluating the shortened rule on the stack Prometheus' data (see the module doc)."""
    folder = tmp_path_factory.mktemp("fast-prometheus")
    (folder / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "services-shortened", "rules": [shortened_error_ratio_rule()]}]})
    )
    port = free_port()
    config = {
        "global": {
            "scrape_interval": "5s",
            "evaluation_interval": "5s",
            "external_labels": {"stack": TEST_STACK_LABEL},
        },
        "rule_files": [str(folder / "rules.yml")],
        # filter_external_labels: false, else our external label becomes a matcher no stored series has.
        "remote_read": [
            {
                "url": f"{stack['prometheus']}/api/v1/read",
                "read_recent": True,
                "filter_external_labels": False,
            }
        ],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [stack["alertmanager"].split("//")[1]]}]}]
        },
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _ok(f"{url}/-/ready"), timeout=30, interval=0.3, what="the test Prometheus to be ready"
        )
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _active_alerts(alertname: str, **labels: str) -> list[dict[str, Any]]:
    """Alerts Alertmanager holds as active or suppressed (resolved ones are left out by its API)."""
    matchers = [f'alertname="{alertname}"', *(f'{k}="{v}"' for k, v in labels.items())]
    query = urllib.parse.urlencode([("filter", m) for m in matchers])
    try:
        return list(
            httpx.get(f"{_stack.endpoints()['alertmanager']}/api/v2/alerts?{query}", timeout=5).json()
        )
    except (httpx.HTTPError, ValueError):
        return []  # Alertmanager restarting under another test: ask again


def _audit(folder: Path) -> list[dict[str, Any]]:
    path = folder / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _decisions(folder: Path, alertname: str, service: str) -> list[dict[str, Any]]:
    """Audit records of one alert group (other groups, e.g. another service's, may arrive meanwhile)."""
    return [r for r in _audit(folder) if r["alertname"] == alertname and r["service"] == service]


def _drive(orders_url: str, stop: threading.Event, failing: threading.Event) -> None:
    """Requests as fast as one client goes; every one fails with 500 while ``failing`` is set."""
    with httpx.Client(base_url=orders_url, timeout=15) as client:
        index = 0
        while not stop.is_set():
            headers = {"X-Simulate-Failure": "1"} if failing.is_set() else {}
            try:
                client.post("/orders", json={"customer": f"alert-{index}", "amount": 3}, headers=headers)
            except httpx.HTTPError:
                pass
            index += 1
            stop.wait(0.02)


def test_error_injection_fires_the_error_ratio_alert_into_the_recovery_action_once_then_resolves(
    stack: dict[str, str], recovery: Path, fast_prometheus: str, tmp_path: Path
) -> None:
    stale = [a for a in _active_alerts("ServiceHighErrorRatio", service="orders")]
    assert not stale, (
        f"ServiceHighErrorRatio for orders already active in Alertmanager; its group would hide ours: {stale}"
    )
    stop, failing = threading.Event(), threading.Event()
    with demo_services(_stack.endpoints()["otlp"], tmp_path / "services") as urls:
        drivers = [
            threading.Thread(target=_drive, args=(urls.orders, stop, failing), daemon=True) for _ in range(2)
        ]
        failing.set()
        for driver in drivers:
            driver.start()
        try:
            started = time.monotonic()
            try:
                wait_until(
                    lambda: any(
                        r["decision"] == "ran"
                        for r in _decisions(recovery, "ServiceHighErrorRatio", "orders")
                    ),
                    timeout=300,
                    interval=1,
                    what="ServiceHighErrorRatio to reach the recovery webhook through Alertmanager",
                )
            except TimeoutError as exc:  # say where the alert stopped, for whoever reads the CI log
                rule_state = httpx.get(f"{fast_prometheus}/api/v1/alerts", timeout=5).text[:1500]
                held = _active_alerts("ServiceHighErrorRatio")
                audit = (
                    (recovery / "audit.jsonl").read_text()[-1500:]
                    if (recovery / "audit.jsonl").exists()
                    else ""
                )
                raise AssertionError(
                    f"{exc}\ntest Prometheus alerts: {rule_state}\nAlertmanager holds: {held}\naudit: {audit}"
                ) from exc
            fired_after = time.monotonic() - started
            [firing] = _active_alerts("ServiceHighErrorRatio", service="orders", stack=TEST_STACK_LABEL)
            assert firing["labels"] == {
                "alertname": "ServiceHighErrorRatio",
                "job": "orders",
                "service": "orders",
                "severity": "critical",
                "stack": TEST_STACK_LABEL,
            }
            assert firing["annotations"]["runbook_url"].endswith("/docs/runbooks/ServiceHighErrorRatio.md")

            failing.clear()  # the errors stop; healthy traffic goes on
            wait_until(
                lambda: not _active_alerts("ServiceHighErrorRatio", service="orders", stack=TEST_STACK_LABEL),
                timeout=180,
                interval=2,
                what="ServiceHighErrorRatio to resolve in Alertmanager once the errors stopped",
            )
            resolved_after = time.monotonic() - started
        finally:
            stop.set()
            for driver in drivers:
                driver.join(timeout=20)

    decisions = _decisions(recovery, "ServiceHighErrorRatio", "orders")
    ran = [r for r in decisions if r["decision"] == "ran"]
    assert len(ran) == 1, decisions
    record = dict(ran[0])
    assert record.pop("ts").endswith("Z") and record.pop("fingerprints")
    assert record == {
        "groupKey": ERROR_RATIO_GROUP,
        "alertname": "ServiceHighErrorRatio",
        "service": "orders",
        "status": "firing",
        "action": record["action"],
        "decision": "ran",
        "reason": "recovered ServiceHighErrorRatio",
    }
    assert record["action"].startswith("sh -c ")
    # Anything later for the group while it fired was skipped, never run again.
    assert all(r["decision"] in ("skipped", "rearmed") for r in decisions if r is not ran[0])
    markers = [
        json.loads(line) for line in (recovery / "ServiceHighErrorRatio.marker").read_text().splitlines()
    ]
    [marker] = [m for m in markers if m["service"] == "orders"]
    assert marker == {
        "alertname": "ServiceHighErrorRatio",
        "job": "orders",
        "service": "orders",
        "severity": "critical",
        "stack": TEST_STACK_LABEL,
    }
    print(
        f"ServiceHighErrorRatio: action ran {fired_after:.0f}s after errors began; resolved at {resolved_after:.0f}s"
    )


def _push_dead_letter_line(service_name: str, order_id: str) -> None:
    """One CRITICAL DEAD_LETTER log record, as otel_correlate._dead_letters logs it, through the collector."""
    now_ns = str(time.time_ns())
    body = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": service_name}},
                        {"key": "deployment.environment.name", "value": {"stringValue": "test"}},
                    ]
                },
                "scopeLogs": [
                    {
                        "scope": {"name": "otel_correlate"},
                        "logRecords": [
                            {
                                "timeUnixNano": now_ns,
                                "observedTimeUnixNano": now_ns,
                                "severityNumber": 21,
                                "severityText": "CRITICAL",
                                "body": {
                                    "stringValue": f"DEAD_LETTER notification for {order_id} failed for good"
                                },
                                "attributes": [{"key": "orderId", "value": {"stringValue": order_id}}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    answer = httpx.post(f"{_stack.endpoints()['otlp']}/v1/logs", json=body, timeout=10)
    assert answer.status_code == 200, answer.text


def test_a_dead_letter_line_fires_the_loki_ruler_alert_into_the_recovery_action_once(
    stack: dict[str, str], recovery: Path
) -> None:
    # A service name of its own makes a new alert group (grouped by alertname and service), so the
    # notification goes out after group_wait instead of joining a group that fired earlier.
    service = f"alert-e2e-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    _push_dead_letter_line(service, "ORD-alerte2e")

    def ran() -> list[dict[str, Any]]:
        return _decisions(recovery, "DeadLetterLogged", service)

    wait_until(
        lambda: any(r["decision"] == "ran" for r in ran()),
        timeout=120,
        interval=1,
        what=f"DeadLetterLogged for {service} to reach the recovery webhook from the Loki ruler",
    )
    [alert] = _active_alerts("DeadLetterLogged", service=service)
    assert alert["labels"] == {
        "alertname": "DeadLetterLogged",
        "service": service,
        "service_name": service,
        "severity": "critical",
    }
    assert alert["annotations"]["runbook_url"].endswith("/docs/runbooks/DeadLetterLogged.md")
    [record] = [r for r in ran() if r["decision"] == "ran"]
    record = dict(record)
    assert record.pop("ts").endswith("Z") and record.pop("fingerprints")
    assert record == {
        "groupKey": f'{{}}/{{severity=~"critical|warning"}}:{{alertname="DeadLetterLogged", service="{service}"}}',
        "alertname": "DeadLetterLogged",
        "service": service,
        "status": "firing",
        "action": record["action"],
        "decision": "ran",
        "reason": "recovered DeadLetterLogged",
    }
    markers = [json.loads(line) for line in (recovery / "DeadLetterLogged.marker").read_text().splitlines()]
    assert [m for m in markers if m["service"] == service] == [alert["labels"]]
    print(f"DeadLetterLogged: action ran {time.monotonic() - started:.0f}s after the line was sent")


def test_the_shortened_rule_differs_from_the_committed_one_only_in_for_and_windows() -> None:
    committed = yaml.safe_load((ROOT / "alerts" / "services.yml").read_text())
    [original] = [
        r for g in committed["groups"] for r in g["rules"] if r.get("alert") == "ServiceHighErrorRatio"
    ]
    short = shortened_error_ratio_rule()
    assert {k: v for k, v in short.items() if k not in ("for", "expr")} == {
        k: v for k, v in original.items() if k not in ("for", "expr")
    }
    assert short["expr"].replace("[1m]", "[5m]") == original["expr"] and "> 0.05" in short["expr"]
