"""Automated recovery: an Alertmanager webhook receiver that runs one registered action per alert group.

Alertmanager posts a group of alerts to ``POST /alerts`` (``webhook_configs``,
payload version 4). For every firing alert name in the group the service looks
up the registered action and runs it at most once per ``(groupKey, alertname)``
while the group fires; a resolved notification re-arms it. Every decision -
ran, failed, skipped (already ran, no action registered) and re-armed - is one
JSON line in the audit file, and the audit file is replayed at start so a
restart does not run an action twice. ``POST /watchdog`` takes the always-firing
Watchdog and ``GET /watchdog`` answers 200 while it arrived recently, 503 when
not (a dead man's switch for a prober).

Example:
    $ otel-correlate recovery serve --port 9095 --audit-file recovery.jsonl \\
        --action ServiceHighErrorRatio='systemctl restart orders'

    >>> registry = RecoveryRegistry()
    >>> registry.register("CircuitBreakerOpen", lambda alert: "probe sent")
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: An action gets the alert (labels and annotations) and returns a short result text; raising means it failed.
RecoveryAction = Callable[["FiringAlert"], str]


@dataclass(frozen=True)
class FiringAlert:
    """What an action knows about the alert it recovers from."""

    alertname: str
    group_key: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass
class RecoveryRegistry:
    """Alert name → recovery action."""

    actions: dict[str, tuple[str, RecoveryAction]] = field(default_factory=dict)

    def register(self, alertname: str, action: RecoveryAction, *, name: str | None = None) -> None:
        """Run ``action`` when ``alertname`` fires; ``name`` is what the audit line calls it."""
        self.actions[alertname] = (name or str(getattr(action, "__name__", "action")), action)

    def register_command(self, alertname: str, command: str, *, timeout: float = 60.0) -> None:
        """Run ``command`` (split like a shell, no shell) with the alert in ``OTEL_CORRELATE_ALERT_*``."""
        argv = shlex.split(command)
        if not argv:
            raise ValueError(f"--action {alertname}=: the command is empty; give e.g. {alertname}='true'")

        def run(alert: FiringAlert) -> str:
            env = dict(os.environ)
            env["OTEL_CORRELATE_ALERT_NAME"] = alert.alertname
            env["OTEL_CORRELATE_ALERT_GROUP_KEY"] = alert.group_key
            env["OTEL_CORRELATE_ALERT_LABELS"] = json.dumps(dict(alert.labels), sort_keys=True)
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-500:]}")
            return done.stdout.strip()[-500:]

        self.register(alertname, run, name=command)


class PayloadError(ValueError):
    """The request body is not an Alertmanager webhook payload."""


def _utc(timestamp: float) -> str:
    return (
        dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class RecoveryService:
    """The decisions, independent of HTTP: at most one action run per firing (groupKey, alertname)."""

    def __init__(
        self,
        registry: RecoveryRegistry,
        *,
        audit_file: str | os.PathLike[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.audit_file = Path(audit_file)
        self._clock = clock
        self._lock = threading.Lock()
        self._claimed: set[tuple[str, str]] = set()
        self.watchdog_last_seen: float | None = None
        self._replay()

    def _replay(self) -> None:
        if not self.audit_file.exists():
            return
        for line in self.audit_file.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = (record.get("groupKey", ""), record.get("alertname", ""))
            if record.get("decision") in ("ran", "failed"):
                self._claimed.add(key)
            elif record.get("decision") == "rearmed":
                self._claimed.discard(key)

    def _audit(self, **record: Any) -> dict[str, Any]:
        line = {"ts": _utc(self._clock()), **record}
        self.audit_file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.audit_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, sort_keys=True) + "\n")
        return line

    def handle(self, payload: Any) -> list[dict[str, Any]]:
        """Act on one webhook payload; returns the audit records written.

        Raises:
            PayloadError: ``payload`` lacks groupKey, status or alerts.
        """
        if not isinstance(payload, dict):
            raise PayloadError("the body must be a JSON object (Alertmanager webhook payload version 4)")
        group_key, status, alerts = payload.get("groupKey"), payload.get("status"), payload.get("alerts")
        if (
            not isinstance(group_key, str)
            or status not in ("firing", "resolved")
            or not isinstance(alerts, list)
        ):
            raise PayloadError(
                f"need groupKey (string), status (firing|resolved) and alerts (list); got "
                f"groupKey={group_key!r}, status={status!r}, alerts={type(alerts).__name__}"
            )
        by_name: dict[str, list[dict[str, Any]]] = {}
        for alert in alerts:
            if isinstance(alert, dict) and isinstance(alert.get("labels"), dict):
                by_name.setdefault(str(alert["labels"].get("alertname", "")), []).append(alert)
        return [self._decide(group_key, name, group) for name, group in sorted(by_name.items())]

    def _decide(self, group_key: str, alertname: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        firing = [a for a in alerts if a.get("status", "firing") == "firing"]
        base = {
            "groupKey": group_key,
            "alertname": alertname,
            "service": str(alerts[0]["labels"].get("service", "")),
            "fingerprints": sorted(str(a.get("fingerprint", "")) for a in alerts),
        }
        key = (group_key, alertname)
        registered = self.registry.actions.get(alertname)
        action_name = registered[0] if registered else None
        if not firing:
            with self._lock:
                was_claimed = key in self._claimed
                self._claimed.discard(key)
            return self._audit(
                **base,
                status="resolved",
                action=action_name,
                decision="rearmed" if was_claimed else "skipped",
                reason="group resolved" if was_claimed else "resolved, nothing ran",
            )
        if registered is None:
            return self._audit(
                **base, status="firing", action=None, decision="skipped", reason="no action registered"
            )
        with self._lock:
            already = key in self._claimed
            self._claimed.add(key)
        if already:
            return self._audit(
                **base,
                status="firing",
                action=action_name,
                decision="skipped",
                reason="already ran for this group while firing",
            )
        labels = {str(k): str(v) for k, v in firing[0]["labels"].items()}
        annotations = {str(k): str(v) for k, v in (firing[0].get("annotations") or {}).items()}
        alert = FiringAlert(alertname=alertname, group_key=group_key, labels=labels, annotations=annotations)
        try:
            result = registered[1](alert)
        except Exception as exc:  # an action's failure is audited, never retried automatically
            return self._audit(
                **base,
                status="firing",
                action=action_name,
                decision="failed",
                reason=f"{type(exc).__name__}: {exc}",
            )
        return self._audit(**base, status="firing", action=action_name, decision="ran", reason=result)

    def now(self) -> float:
        """The service's clock (``time.time`` unless a test gives another)."""
        return self._clock()

    def watchdog(self, payload: Any) -> None:
        """Record that the always-firing Watchdog arrived."""
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            raise PayloadError("the body must be an Alertmanager webhook payload with alerts")
        self.watchdog_last_seen = self._clock()


def _handler(service: RecoveryService, *, watchdog_max_age: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "otel-correlate-recovery"

        def _reply(self, code: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path not in ("/alerts", "/watchdog"):
                self._reply(404, {"error": f"unknown path {self.path}; POST /alerts or /watchdog"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                payload = json.loads(self.rfile.read(length) or b"null")
                if self.path == "/watchdog":
                    service.watchdog(payload)
                    self._reply(200, {"status": "ok"})
                    return
                records = service.handle(payload)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self._reply(400, {"error": f"body is not JSON: {exc}"})
                return
            except PayloadError as exc:
                self._reply(400, {"error": str(exc)})
                return
            self._reply(200, {"status": "ok", "decisions": records})

        def do_GET(self) -> None:
            if self.path == "/-/healthy":
                self._reply(200, {"status": "ok"})
            elif self.path == "/watchdog":
                seen = service.watchdog_last_seen
                age = None if seen is None else round(service.now() - seen, 3)
                healthy = age is not None and age <= watchdog_max_age
                self._reply(200 if healthy else 503, {"healthy": healthy, "age_seconds": age})
            else:
                self._reply(404, {"error": f"unknown path {self.path}"})

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"recovery: {self.address_string()} {format % args}\n")

    return Handler


@contextmanager
def serve(
    service: RecoveryService, *, host: str = "127.0.0.1", port: int = 9095, watchdog_max_age: float = 600.0
) -> Iterator[ThreadingHTTPServer]:
    """Run the webhook server in a thread for the duration of the ``with`` block (port 0 picks a free port)."""
    server = ThreadingHTTPServer((host, port), _handler(service, watchdog_max_age=watchdog_max_age))
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="otel-correlate-recovery",
        daemon=True,
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _parse_action(text: str) -> tuple[str, str]:
    name, sep, command = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--action {text!r}: use AlertName=command, e.g. ServiceDown='true'")
    return name, command


def _cmd_serve(args: argparse.Namespace) -> int:
    registry = RecoveryRegistry()
    for alertname, command in args.action:
        registry.register_command(alertname, command, timeout=args.action_timeout)
    service = RecoveryService(registry, audit_file=args.audit_file)
    with serve(service, host=args.host, port=args.port, watchdog_max_age=args.watchdog_max_age) as server:
        port = server.server_address[1]
        print(f"recovery webhook on http://{args.host}:{port}/alerts, audit {args.audit_file}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``recovery serve`` to the ``otel-correlate`` command."""
    recovery = subparsers.add_parser("recovery", help="the automated-recovery webhook for Alertmanager")
    commands = recovery.add_subparsers(dest="recovery_command", required=True, metavar="COMMAND")
    serve_cmd = commands.add_parser("serve", help="receive Alertmanager webhooks and run recovery actions")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=9095, help="listen port (default 9095; 0 picks one)")
    serve_cmd.add_argument("--audit-file", required=True, help="JSON-lines audit file, appended to")
    serve_cmd.add_argument(
        "--action",
        type=_parse_action,
        action="append",
        default=[],
        metavar="ALERT=COMMAND",
        help="run COMMAND once per alert group when ALERT fires (repeatable)",
    )
    serve_cmd.add_argument("--action-timeout", type=float, default=60.0, help="seconds per action (60)")
    serve_cmd.add_argument(
        "--watchdog-max-age", type=float, default=600.0, help="GET /watchdog is 503 after this many seconds"
    )
    serve_cmd.set_defaults(handler=_cmd_serve)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m otel_correlate._recovery serve ...`` (same as ``otel-correlate recovery serve``)."""
    parser = argparse.ArgumentParser(prog="python -m otel_correlate._recovery")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["recovery", *(argv if argv is not None else sys.argv[1:])])
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
