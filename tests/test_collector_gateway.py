"""Past one machine: an agent balances by trace id over two gateways, and a trace never splits.

Two gateway collectors (our main build with collector/config.yaml + auth.yaml +
gateway.yaml, TLS and a bearer token on loopback) each export their traces to
their own OTLP receiver in the test; one agent collector (our agent build with
collector/agent.yaml and the load-balancing exporter, static resolver listing
both gateways) receives the spans. Spans of many traces arrive at the agent in
interleaved batches; every trace must come out whole at exactly one gateway.
"""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest
import yaml

from otel_correlate._procs import wait_until
from otel_correlate._receiver import OTLPReceiver
from tests.collector_procs import (
    AGENT,
    AUTH,
    CONFIG,
    GATEWAY,
    RunningCollector,
    running_collector,
    self_signed_cert,
)
from tests.otlp_payloads import spans_request, trace_id

TRACES, SPANS_PER_TRACE = 60, 4


def _capture_overlay(path: Path, receiver: OTLPReceiver) -> Path:
    """A test-only config: the gateway's traces go to ``receiver`` instead of Tempo."""
    overlay = {
        "exporters": {"otlp_http/capture": {"endpoint": receiver.endpoint, "compression": "none"}},
        "service": {
            "pipelines": {
                "traces": {"exporters": ["otlp_http/capture"]},
                # span_metrics is no longer fed by traces; metrics come from OTLP only.
                "metrics": {"receivers": ["otlp"]},
            }
        },
    }
    path.write_text(yaml.safe_dump(overlay))
    return path


def test_agent_balances_traces_and_logs_by_trace_id_and_metrics_by_resource() -> None:
    config = yaml.safe_load(AGENT.read_text())
    exporters = config["exporters"]
    pipelines = config["service"]["pipelines"]
    assert exporters[pipelines["traces"]["exporters"][0]]["routing_key"] == "traceID"
    assert exporters[pipelines["logs"]["exporters"][0]]["routing_key"] == "traceID"
    assert exporters[pipelines["metrics"]["exporters"][0]]["routing_key"] == "resource"
    for exporter in exporters.values():
        assert exporter["protocol"]["otlp"]["auth"] == {"authenticator": "bearertokenauth/gateway"}
        assert "insecure" not in exporter["protocol"]["otlp"]["tls"], "agents reach gateways over TLS"


@pytest.mark.e2e
def test_every_span_of_a_trace_lands_on_the_same_gateway(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    token = tmp_path / "gateway-token"
    token.write_text("gateway-test-token\n")
    token.chmod(0o600)
    gateway_env = {
        "OTEL_CORRELATE_BIND": "127.0.0.1",
        "OTEL_CORRELATE_TOKEN_FILE": str(token),
        "OTEL_CORRELATE_TLS_CERT_FILE": str(cert),
        "OTEL_CORRELATE_TLS_KEY_FILE": str(key),
    }
    with OTLPReceiver() as sink_a, OTLPReceiver() as sink_b:
        with (
            running_collector(
                [CONFIG, AUTH, GATEWAY, _capture_overlay(tmp_path / "a.yaml", sink_a)],
                tmp_path=tmp_path,
                env=gateway_env,
                name="gateway-a",
            ) as gateway_a,
            running_collector(
                [CONFIG, AUTH, GATEWAY, _capture_overlay(tmp_path / "b.yaml", sink_b)],
                tmp_path=tmp_path,
                env=gateway_env,
                name="gateway-b",
            ) as gateway_b,
        ):
            gateways = f"[127.0.0.1:{gateway_a.ports.grpc}, 127.0.0.1:{gateway_b.ports.grpc}]"
            agent_env = {
                "OTEL_CORRELATE_GATEWAYS": gateways,
                "OTEL_CORRELATE_GATEWAY_CA_FILE": str(cert),
                "OTEL_CORRELATE_GATEWAY_TOKEN_FILE": str(token),
            }
            with running_collector(
                [AGENT], tmp_path=tmp_path, env=agent_env, name="agent", binary="otelcol-correlate-agent"
            ) as agent:
                _send_interleaved(agent)
                expected = TRACES * SPANS_PER_TRACE
                try:
                    wait_until(
                        lambda: len(sink_a.spans) + len(sink_b.spans) >= expected,
                        timeout=30,
                        interval=0.2,
                        what=f"{expected} spans at the two gateways' receivers",
                    )
                except TimeoutError as exc:
                    logs = "\n".join(c.log_tail(15) for c in (agent, gateway_a, gateway_b))
                    raise AssertionError(
                        f"{exc}: got {len(sink_a.spans)} + {len(sink_b.spans)}\n{logs}"
                    ) from None

    at_a, at_b = sink_a.traces(), sink_b.traces()
    assert not set(at_a) & set(at_b), "a trace was split between the gateways"
    assert at_a and at_b, f"one gateway got everything: {len(at_a)} vs {len(at_b)} traces"
    received = {**at_a, **at_b}
    assert set(received) == {trace_id(n).hex() for n in range(TRACES)}
    for trace, spans in received.items():
        assert len(spans) == SPANS_PER_TRACE, (trace, [s.name for s in spans])
        assert {s.name for s in spans} == {f"step-{n}" for n in range(SPANS_PER_TRACE)}
        # The gateway's own pipeline ran: resource defaults were filled in.
        assert all(s.resource["deployment.environment.name"] == "development" for s in spans)


def _send_interleaved(agent: RunningCollector) -> None:
    """Spans of all traces, shuffled into batches of 17 that each mix many traces."""
    spans = [(t, s) for t in range(TRACES) for s in range(SPANS_PER_TRACE)]
    random.Random(7).shuffle(spans)
    with httpx.Client(timeout=10) as client:
        for start in range(0, len(spans), 17):
            body = spans_request(spans[start : start + 17]).SerializeToString()
            answer = client.post(
                f"{agent.http_endpoint}/v1/traces",
                content=body,
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert answer.status_code == 200, answer.text
