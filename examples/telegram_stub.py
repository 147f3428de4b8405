"""A local HTTP server that behaves like the Telegram Bot API's ``sendMessage``, with scriptable failures.

Run it for the demo services (binds 127.0.0.1; ``--port 0`` picks a free port):

    python examples/telegram_stub.py --port 8765

and point the notifier at it with ``OTEL_CORRELATE_TELEGRAM_API_URL=http://127.0.0.1:8765``.

The Bot API surface:

* ``POST /bot<token>/sendMessage`` with JSON (or form) ``chat_id`` and ``text`` answers like
  Telegram: ``{"ok": true, "result": {"message_id": 1, "chat": {"id": ...}, "date": ..., "text": ...}}``,
  ``{"ok": false, "error_code": 400, "description": "Bad Request: ..."}`` for a missing field and
  ``401 Unauthorized`` when ``--token`` is set and the token differs.

The control surface, for tests and the demo:

* ``GET /_stub/messages``: ``{"messages": [...delivered...], "attempts": [...every sendMessage call...]}``.
* ``POST /_stub/mode`` ``{"mode": M, "times": K, "retry_after": N, "status": S, "delay": D}``: answer the
  next ``K`` calls (every call when ``times`` is absent) in mode ``M``, then succeed again. Modes:
  ``ok``; ``rate_limit`` (429 with ``parameters.retry_after`` = N and a ``Retry-After`` header);
  ``error`` (status S, default 500); ``slow`` (wait D seconds, then deliver); ``timeout`` (wait D
  seconds, deliver nothing, answer 504: a hung upstream).
* ``POST /_stub/script`` ``[{...}, {...}]``: several such steps, in order.
* ``POST /_stub/reset``: forget messages and steps.

Example:
    >>> with TelegramStub() as stub:  # doctest: +SKIP
    ...     stub.url
    'http://127.0.0.1:40123'
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

MODES = ("ok", "rate_limit", "error", "slow", "timeout")


@dataclass
class Step:
    """How to answer the next ``times`` sendMessage calls (``None``: all of them)."""

    mode: str = "ok"
    times: int | None = None
    retry_after: int = 1
    status: int = 500
    delay: float = 0.0

    @classmethod
    def from_json(cls, data: Any) -> Step:
        """Validate one step from the control API; raises ``ValueError`` saying what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a step is a JSON object, got {data!r}")
        unknown = set(data) - {"mode", "times", "retry_after", "status", "delay"}
        if unknown:
            raise ValueError(f"unknown step fields {sorted(unknown)}")
        step = cls(**data)
        if step.mode not in MODES:
            raise ValueError(f"mode={step.mode!r} is unknown; use one of {', '.join(MODES)}")
        if step.times is not None and (not isinstance(step.times, int) or step.times < 1):
            raise ValueError(f"times={step.times!r} must be an integer of at least 1, or absent for always")
        return step


class _State:
    def __init__(self, token: str | None) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.steps: list[Step] = []
        self.messages: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.next_id = 1
        self.stopping = threading.Event()

    def next_step(self) -> Step:
        with self.lock:
            if not self.steps:
                return Step()
            step = self.steps[0]
            if step.times is not None:
                step.times -= 1
                if step.times == 0:
                    self.steps.pop(0)
            return Step(step.mode, None, step.retry_after, step.status, step.delay)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo read JSON, not logs
        pass

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_stub/messages":
            with state.lock:
                self._reply(200, {"messages": list(state.messages), "attempts": list(state.attempts)})
            return
        self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})

    def do_POST(self) -> None:
        raw = self._body()
        if self.path.startswith("/_stub/"):
            self._control(self.path, raw)
        elif self.path.startswith("/bot") and self.path.endswith("/sendMessage"):
            self._send_message(self.path[len("/bot") : -len("/sendMessage")], raw)
        else:
            self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"})

    def _control(self, path: str, raw: bytes) -> None:
        state = self.server.state
        try:
            data = json.loads(raw or b"null")
            if path == "/_stub/mode":
                steps = [Step.from_json(data)]
            elif path == "/_stub/script":
                if not isinstance(data, list):
                    raise ValueError("a script is a JSON list of steps")
                steps = [Step.from_json(item) for item in data]
            elif path == "/_stub/reset":
                steps = []
                with state.lock:
                    state.messages.clear()
                    state.attempts.clear()
                    state.next_id = 1
            else:
                self._reply(404, {"error": f"unknown control path {path}"})
                return
        except (TypeError, ValueError) as exc:
            self._reply(400, {"error": str(exc)})
            return
        with state.lock:
            state.steps = steps
        self._reply(200, {"steps": [step.__dict__ for step in steps]})

    def _send_message(self, token: str, raw: bytes) -> None:
        state = self.server.state
        if "json" in (self.headers.get("Content-Type") or ""):
            try:
                fields = json.loads(raw or b"{}")
            except ValueError:
                fields = None
        else:
            fields = {key: values[0] for key, values in parse_qs(raw.decode()).items()}
        step = state.next_step()
        attempt = {
            "chat_id": fields.get("chat_id") if isinstance(fields, dict) else None,
            "text": fields.get("text") if isinstance(fields, dict) else None,
            "mode": step.mode,
        }
        with state.lock:
            state.attempts.append(attempt)
        if state.token is not None and token != state.token:
            self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        if not isinstance(fields, dict) or not fields.get("chat_id") or not fields.get("text"):
            self._reply(
                400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
            )
            return
        if step.mode == "rate_limit":
            self._reply(
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {step.retry_after}",
                    "parameters": {"retry_after": step.retry_after},
                },
                {"Retry-After": str(step.retry_after)},
            )
            return
        if step.mode == "error":
            self._reply(
                step.status, {"ok": False, "error_code": step.status, "description": "Internal Server Error"}
            )
            return
        if step.mode in ("slow", "timeout") and state.stopping.wait(step.delay):
            return  # the stub is stopping: drop the call
        if step.mode == "timeout":
            self._reply(504, {"ok": False, "error_code": 504, "description": "Gateway Timeout"})
            return
        with state.lock:
            message = {
                "message_id": state.next_id,
                "chat": {"id": fields["chat_id"], "type": "private"},
                "date": int(time.time()),
                "text": fields["text"],
            }
            state.next_id += 1
            state.messages.append(
                {"chat_id": fields["chat_id"], "text": fields["text"], "message_id": message["message_id"]}
            )
        self._reply(200, {"ok": True, "result": message})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, port: int, state: _State) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = state


class TelegramStub:
    """The stub server in a background thread; ``with TelegramStub() as stub:`` starts and stops it.

    Args:
        port: Port on 127.0.0.1; 0 picks a free one.
        token: When set, calls with another bot token get 401.
    """

    def __init__(self, *, port: int = 0, token: str | None = None) -> None:
        self._state = _State(token)
        self._server = _Server(port, self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="telegram-stub",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """The base URL, to use as ``OTEL_CORRELATE_TELEGRAM_API_URL``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> TelegramStub:
        """Start serving; returns itself."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; calls waiting in ``slow``/``timeout`` are dropped."""
        self._state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TelegramStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted: ``python examples/telegram_stub.py --port 8765``."""
    parser = argparse.ArgumentParser(description="Telegram Bot API sendMessage stub with scriptable failures")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--token", help="accept only this bot token (others get 401)")
    args = parser.parse_args(argv)
    stub = TelegramStub(port=args.port, token=args.token)
    print(f"telegram stub listening on {stub.url}", flush=True)
    try:
        stub._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stub._server.server_close()


if __name__ == "__main__":
    main()
