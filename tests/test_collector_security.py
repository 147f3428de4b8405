"""The collector's front door: loopback by default, token and TLS when asked, bad input refused.

Each e2e test starts our collector build on free loopback ports (tests/collector_procs.py)
with the shipped configs, and talks to it with real clients: httpx posting OTLP
protobuf and the OpenTelemetry SDK's own OTLP exporters. Backends point at closed
ports, so nothing reaches the shared stack.
"""

from __future__ import annotations

import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.collector_procs import AUTH, CONFIG, RunningCollector, running_collector, self_signed_cert
from tests.otlp_payloads import spans_request

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TOKEN = "test-token-0123456789abcdef"


# --- the shipped files, read as data ----------------------------------------------------


def _yaml(path: Path) -> dict[str, object]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_metrics_reach_prometheus_without_a_replayed_write_ahead_log() -> None:
    """The remote-write WAL stays off: it replayed every old sample first after a restart (see config.yaml)."""
    exporters = _yaml(CONFIG)["exporters"]
    assert isinstance(exporters, dict)
    remote_write = exporters["prometheus_remote_write"]
    assert "wal" not in remote_write
    # without it, the in-memory queue retries for as long as Prometheus is away, with one sender
    assert remote_write["retry_on_failure"] == {
        "enabled": True,
        "initial_interval": "1s",
        "max_interval": "30s",
        "max_elapsed_time": "0s",
    }
    assert remote_write["remote_write_queue"] == {"num_consumers": 1}


def test_auth_overlay_keeps_every_extension_of_the_main_config() -> None:
    # The collector replaces lists when it merges --config files, so the overlay restates them.
    main = _yaml(CONFIG)["service"]["extensions"]  # type: ignore[index]
    overlay = _yaml(AUTH)["service"]["extensions"]  # type: ignore[index]
    assert overlay == [*main, "bearertokenauth"]


def test_auth_overlay_protects_both_protocols_with_token_and_tls_from_files() -> None:
    protocols = _yaml(AUTH)["receivers"]["otlp"]["protocols"]  # type: ignore[index]
    assert set(protocols) == {"grpc", "http"}
    for settings in protocols.values():
        assert settings["auth"] == {"authenticator": "bearertokenauth"}
        assert "${env:OTEL_CORRELATE_TLS_CERT_FILE" in settings["tls"]["cert_file"]
        assert "${env:OTEL_CORRELATE_TLS_KEY_FILE" in settings["tls"]["key_file"]
    extension = _yaml(AUTH)["extensions"]["bearertokenauth"]  # type: ignore[index]
    assert set(extension) == {"filename"}, "the token comes from a file, never from the config"


def test_receivers_bind_loopback_and_limit_request_size_by_default() -> None:
    protocols = _yaml(CONFIG)["receivers"]["otlp"]["protocols"]  # type: ignore[index]
    for settings in protocols.values():
        assert settings["endpoint"].startswith("${env:OTEL_CORRELATE_BIND:-127.0.0.1}:")
    assert protocols["http"]["max_request_body_size"] == "${env:OTEL_CORRELATE_OTLP_MAX_BODY_BYTES:-8388608}"
    assert protocols["grpc"]["max_recv_msg_size_mib"] == "${env:OTEL_CORRELATE_OTLP_MAX_RECV_MIB:-8}"


# --- loopback only ----------------------------------------------------------------------


def _listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by ``pid``, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            address_hex, port_hex = local.split(":")
            assert len(address_hex) == width
            if table == "tcp":
                address = ".".join(str(int(address_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                address = "::" if int(address_hex, 16) == 0 else f"ipv6:{address_hex}"
            found.add((address, int(port_hex, 16)))
    return found


@pytest.mark.e2e
def test_default_config_listens_on_loopback_only(tmp_path: Path) -> None:
    with running_collector([CONFIG], tmp_path=tmp_path) as collector:
        sockets = _listening_sockets(collector.process.pid)
    ports = collector.ports
    assert {port for _, port in sockets} == {
        ports.grpc,
        ports.http,
        ports.health,
        ports.telemetry,
        ports.pprof,
    }
    assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets


# --- bearer token and TLS ---------------------------------------------------------------


@pytest.fixture
def secured_collector(tmp_path: Path) -> RunningCollector:
    cert, key = self_signed_cert(tmp_path)
    token_file = tmp_path / "collector-token"
    token_file.write_text(f"{TOKEN}  # the only accepted token\n")
    token_file.chmod(0o600)
    env = {
        "OTEL_CORRELATE_TOKEN_FILE": str(token_file),
        "OTEL_CORRELATE_TLS_CERT_FILE": str(cert),
        "OTEL_CORRELATE_TLS_KEY_FILE": str(key),
    }
    with running_collector([CONFIG, AUTH], tmp_path=tmp_path, env=env, name="secured") as collector:
        yield collector  # type: ignore[misc]


def _one_span_exported(exporter: SpanExporter) -> SpanExportResult:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("security-test").start_as_current_span(
        "checkout", attributes={"orderId": "A-1"}
    ):
        pass
    spans: list[ReadableSpan] = list(memory.get_finished_spans())
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()
        provider.shutdown()


@pytest.mark.e2e
def test_otlp_http_needs_the_token_over_tls(
    secured_collector: RunningCollector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"https://127.0.0.1:{secured_collector.ports.http}/v1/traces"
    body = spans_request([(1, 0)]).SerializeToString()
    cert = str(tmp_path / "collector.crt")
    with httpx.Client(verify=ssl.create_default_context(cafile=cert), timeout=10) as client:
        missing = client.post(url, content=body, headers=PROTOBUF)
        wrong = client.post(url, content=body, headers={**PROTOBUF, "Authorization": "Bearer not-the-token"})
        good = client.post(url, content=body, headers={**PROTOBUF, "Authorization": f"Bearer {TOKEN}"})
    assert (missing.status_code, wrong.status_code, good.status_code) == (401, 401, 200)

    # The SDK's own OTLP/HTTP exporter, configured as docs/operations.md says. requests lets
    # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE win over the exporter's certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with_token = HTTPSpanExporter(
        endpoint=url, certificate_file=cert, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    without = HTTPSpanExporter(endpoint=url, certificate_file=cert, timeout=5)
    assert _one_span_exported(with_token) is SpanExportResult.SUCCESS
    assert _one_span_exported(without) is SpanExportResult.FAILURE


@pytest.mark.e2e
def test_plain_http_is_refused_when_tls_is_on(secured_collector: RunningCollector) -> None:
    url = f"http://127.0.0.1:{secured_collector.ports.http}/v1/traces"
    body = spans_request([(1, 0)]).SerializeToString()
    try:
        answer = httpx.post(
            url, content=body, headers={**PROTOBUF, "Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
    except httpx.HTTPError:
        return  # the TLS server dropped the plaintext connection: refused
    # Go's TLS server answers a plaintext request with 400 "client sent an HTTP request to an HTTPS server".
    assert answer.status_code == 400, answer.text
    assert "HTTPS" in answer.text


@pytest.mark.e2e
def test_otlp_grpc_needs_the_token_over_tls(secured_collector: RunningCollector, tmp_path: Path) -> None:
    grpc_exporter = pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
    endpoint = f"https://127.0.0.1:{secured_collector.ports.grpc}"
    cert = str(tmp_path / "collector.crt")

    def exporter(**extra: object) -> SpanExporter:
        return grpc_exporter.OTLPSpanExporter(endpoint=endpoint, insecure=False, timeout=5, **extra)  # type: ignore[no-any-return]

    with open(cert, "rb") as pem:
        from grpc import ssl_channel_credentials

        credentials = ssl_channel_credentials(pem.read())
    assert (
        _one_span_exported(exporter(credentials=credentials, headers={"authorization": f"Bearer {TOKEN}"}))
        is SpanExportResult.SUCCESS
    )
    assert (
        _one_span_exported(exporter(credentials=credentials, headers={"authorization": "Bearer wrong"}))
        is SpanExportResult.FAILURE
    )


# --- bad input --------------------------------------------------------------------------


@pytest.mark.e2e
def test_oversized_and_malformed_payloads_are_refused_and_the_collector_stays_up(tmp_path: Path) -> None:
    with running_collector([CONFIG], tmp_path=tmp_path) as collector:
        url = f"{collector.http_endpoint}/v1/traces"
        with httpx.Client(timeout=30) as client:
            # 9 MiB, over the shipped 8 MiB limit, as one valid request.
            big = spans_request([(1, n) for n in range(9)], padding="x" * (1024 * 1024)).SerializeToString()
            assert len(big) > 8 * 1024 * 1024
            oversized = client.post(url, content=big, headers=PROTOBUF)
            malformed = client.post(url, content=b"\x0a\xff\xff\xff\xff\x0f not protobuf", headers=PROTOBUF)
            good = client.post(url, content=spans_request([(2, 0)]).SerializeToString(), headers=PROTOBUF)
        assert oversized.status_code in (400, 413), oversized.text
        assert malformed.status_code == 400, malformed.text
        assert good.status_code == 200
        assert collector.healthy()
        assert collector.process.poll() is None


@pytest.mark.e2e
def test_a_flood_beyond_the_memory_limit_is_refused_retryably_and_memory_stays_bounded(
    tmp_path: Path,
) -> None:
    # Refusals start when the Go heap passes limit - spike (24 MiB) at a check.
    limit_mib, spike_mib = 32, 8
    env = {
        "OTEL_CORRELATE_MEMORY_LIMIT_MIB": str(limit_mib),
        "OTEL_CORRELATE_MEMORY_SPIKE_MIB": str(spike_mib),
        # A short check interval and a Go soft limit under the hard limit, as
        # docs/operations.md recommends, keep the heap close to the limiter's view.
        "OTEL_CORRELATE_MEMORY_CHECK_INTERVAL": "100ms",
        "GOMEMLIMIT": f"{limit_mib - spike_mib}MiB",
    }
    with running_collector([CONFIG], tmp_path=tmp_path, env=env, name="flooded") as collector:
        url = f"{collector.http_endpoint}/v1/traces"
        # 1 MiB requests, each a real batch of 64 spans; 8 senders for 5 s: at most a few hundred MB.
        body = spans_request(
            [(n, s) for n in range(8) for s in range(8)], padding="y" * 16384
        ).SerializeToString()
        statuses: list[int] = []
        peak_anon_mib = 0.0
        deadline = time.monotonic() + 5

        def send(_: int) -> list[int]:
            seen = []
            with httpx.Client(timeout=30) as client:
                while time.monotonic() < deadline:
                    seen.append(client.post(url, content=body, headers=PROTOBUF).status_code)
            return seen

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(send, i) for i in range(8)]
            while not all(f.done() for f in futures):
                peak_anon_mib = max(peak_anon_mib, collector.anon_rss_mib())
                time.sleep(0.05)
            for future in futures:
                statuses.extend(future.result())

        refused = [s for s in statuses if s != 200]
        summary = f"{len(statuses)} requests, statuses {sorted(set(statuses))}, peak anon RSS {peak_anon_mib:.0f} MiB"
        print(summary)
        assert refused, f"no refusal: {summary}"
        # OTLP/HTTP: 429/502/503/504 are retryable, so the SDK backs off and sends again later.
        assert set(refused) == {503}, summary
        assert 200 in statuses, f"the collector accepted nothing at all: {summary}"
        # The limiter bounds the Go heap at each check; in-flight request bodies (8 x 1 MiB,
        # decoded) and memory the Go runtime has not yet returned to the OS come on top.
        # File-backed pages of the persistent queue's mmap are page cache and not counted.
        assert peak_anon_mib < limit_mib + 96, summary
        time.sleep(1.5)  # one memory_limiter check after the flood
        assert collector.healthy(), collector.log_tail()
        assert collector.process.poll() is None
