"""The ablation benchmark (benchmarks/ablation.py): how a part's cost is measured, and one real run of it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = Path.home() / ".cache" / "otel-correlate" / "bin" / "otelcol-correlate"
PARTS = [
    "none",
    "server wrapper",
    "server span",
    "span processors",
    "span export",
    "log records",
    "log export",
    "request duration",
    "exemplars",
    "business metric",
    "request keys",
    "native request start",
    "route keys",
]


def _ablation() -> Any:
    spec = importlib.util.spec_from_file_location("bench_ablation", ROOT / "benchmarks" / "ablation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Part:
    """A part that costs `work` loop steps per request while it is on."""

    def __init__(self, work: int) -> None:
        self.work = work
        self.on = True
        self.blocks: list[bool] = []  # per block: was the part on

    def switch(self) -> tuple[Any, Any]:
        return (lambda: setattr(self, "on", False)), (lambda: setattr(self, "on", True))

    def loop(self, requests: int, sent: Any = None) -> None:
        self.blocks.append(self.on)
        for _ in range(requests):
            if self.on:
                for _step in range(self.work):
                    pass
            if sent is not None:
                sent()


def test_a_part_costs_what_its_blocks_with_it_cost_more_and_the_order_alternates() -> None:
    ablation = _ablation()
    part = _Part(work=3000)
    differences = ablation.measure(part.loop, part.switch(), pairs=4, block=20)["request"]
    assert len(differences) == 4
    assert all(d > 0 for d in differences), differences  # with the part minus without it
    # on first in even pairs, off first in odd ones; switched back on at the end
    assert part.blocks == [True, False, False, True, True, False, False, True]
    assert part.on is True


def test_a_part_is_switched_back_on_when_a_block_fails() -> None:
    ablation = _ablation()
    part = _Part(work=0)

    def failing(requests: int, sent: Any = None) -> None:
        if not part.on:
            raise RuntimeError("the app failed with the part off")

    with pytest.raises(RuntimeError):
        ablation.measure(failing, part.switch(), pairs=2, block=1)
    assert part.on is True


def test_cold_pairs_switch_the_part_request_by_request_and_evict_before_each() -> None:
    ablation = _ablation()
    part = _Part(work=0)
    events: list[str] = []

    def loop(requests: int, sent: Any = None) -> None:
        events.append(f"request x{requests} {'on' if part.on else 'off'}")
        part.loop(requests, sent)

    ablation.measure(
        loop,
        part.switch(),
        pairs=2,
        block=4,
        flush=lambda: events.append("flush"),
        evict=lambda: events.append("evict"),
    )
    first = ["evict", "request x1 on", "evict", "request x1 off"] * 2 + ["flush"]
    second = ["evict", "request x1 off", "evict", "request x1 on"] * 2 + ["flush"]
    assert events == first + second
    assert part.on is True


def test_cold_counts_the_request_and_what_the_client_waits_for_and_not_the_eviction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a clock only the test moves: a request sends its response after 10 µs with the part
    and 1 µs without, then ends the span for 30 µs more with the part and 2 µs without; the
    eviction takes 500 µs but only before requests with the part, so counting it would show."""
    ablation = _ablation()
    part = _Part(work=0)
    now = [0]

    class Clock:
        @staticmethod
        def thread_time_ns() -> int:
            return now[0]

    def loop(requests: int, sent: Any) -> None:
        for _ in range(requests):
            now[0] += 10_000 if part.on else 1_000
            sent()
            now[0] += 30_000 if part.on else 2_000

    def evict() -> None:
        now[0] += 500_000 if part.on else 0

    monkeypatch.setattr(ablation, "time", Clock)
    assert ablation.measure(loop, part.switch(), pairs=3, block=4, evict=evict) == {
        "request": [37.0, 37.0, 37.0],
        "client": [9.0, 9.0, 9.0],
    }


def test_cold_refuses_a_loop_that_does_not_say_when_it_sent_the_response() -> None:
    ablation = _ablation()
    part = _Part(work=0)
    with pytest.raises(RuntimeError, match="said 0 times that it sent a response"):
        ablation.measure(lambda requests, sent: None, part.switch(), pairs=1, block=2, evict=lambda: None)
    assert part.on is True


def test_the_cold_table_has_the_clients_share_beside_the_whole_request() -> None:
    ablation = _ablation()
    result = {
        "framework": "flask",
        "cold_mb": 48,
        "parts": {
            "server span": {
                "what": "the span",
                "us_per_request": 46.57,
                "q1": 39.8,
                "q3": 51.9,
                "client": {"us_per_request": 27.26, "q1": 20.5, "q3": 31.5},
            }
        },
    }
    header, rule, row = ablation.markdown(result).splitlines()
    assert header.endswith("| of which before the response is sent (median) | middle half |")
    assert rule.count("|") == header.count("|")
    assert row == "| server span | the span | +46.6 | +39.8 .. +51.9 | +27.3 | +20.5 .. +31.5 |"
    warm = ablation.markdown(
        {"framework": "flask", "parts": {"none": {"what": "x", "us_per_request": 0.1, "q1": -1.0, "q3": 2.0}}}
    )
    assert warm.splitlines()[2] == "| none | x | +0.1 | -1.0 .. +2.0 |"


def test_the_evictor_copies_a_buffer_and_refuses_nothing_to_copy() -> None:
    ablation = _ablation()
    evict = ablation.Evictor(1)
    evict()
    assert evict._target == evict._source and len(evict._target) == 1 << 20
    with pytest.raises(ValueError, match=r"--cold needs at least 1 MB.*got 0"):
        ablation.Evictor(0)


def test_replace_switches_an_attribute_off_and_back_and_names_a_missing_one() -> None:
    ablation = _ablation()

    class Owner:
        tracer = "real"

    owner = Owner()
    off, on = ablation._replace(owner, "tracer", "noop")
    off()
    assert owner.tracer == "noop"
    on()
    assert owner.tracer == "real"
    with pytest.raises(SystemExit, match=r"has no 'meter'.*update benchmarks/ablation.py"):
        ablation._replace(owner, "meter", None)


def test_summary_is_the_median_and_middle_half() -> None:
    assert _ablation().summary([5.0, -1.0, 3.0, 9.0, 1.0, 7.0, 2.0, 4.0]) == {
        "us_per_request": 3.5,
        "q1": 2.0,
        "q3": 5.0,
    }


@pytest.fixture(scope="module")
def collector() -> Iterator[str]:
    """The benchmark's collector (our build, discarding what it gets): the OTLP/HTTP endpoint."""
    if not COLLECTOR.exists():
        pytest.skip("the collector is not built (./run setup builds it)")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import run

    run.PORTS.update({name: 26100 + offset for name, offset in run.PORT_OFFSETS.items()})
    with run.collector():
        yield f"http://127.0.0.1:{run.PORTS['http']}"


def _instrumented(framework: str, endpoint: str, *options: str) -> subprocess.CompletedProcess[str]:
    instrument = str(Path(sys.executable).with_name("opentelemetry-instrument"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_SERVICE_NAME="ablation", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    bench = [str(ROOT / "benchmarks" / "ablation.py"), "--framework", framework, "--warmup", "50", *options]
    return subprocess.run(
        [instrument, sys.executable, *bench], capture_output=True, text=True, timeout=180, env=env
    )


@pytest.mark.e2e
@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_every_part_is_found_switched_and_reported_in_a_real_instrumented_process(
    framework: str, collector: str
) -> None:
    """Shape only (no timing): each part exists in the running pipeline, or the tool exits with an error."""
    done = _instrumented(framework, collector, "--pairs", "2", "--block", "20", "--markdown")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["framework"], result["pairs"], result["block"]) == (framework, 2, 20)
    assert list(result["parts"]) == PARTS
    for name, part in result["parts"].items():
        assert set(part) == {"what", "us_per_request", "q1", "q3"}, name
    rows = [line for line in done.stderr.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + len(PARTS)  # header, rule, one row per part
    assert rows[2].startswith("| none | nothing")


@pytest.mark.e2e
def test_a_cold_run_says_so_in_its_record_and_table(collector: str) -> None:
    done = _instrumented(
        "flask",
        collector,
        "--parts",
        "none,server span",
        "--pairs",
        "1",
        "--block",
        "3",
        "--cold",
        "2",
        "--markdown",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["cold_mb"], list(result["parts"])) == (2, ["none", "server span"])
    for part in result["parts"].values():
        assert set(part["client"]) == {"us_per_request", "q1", "q3"}
    rows = [line for line in done.stderr.splitlines() if line.startswith("| ")]
    assert "caches evicted (2 MB) before each request" in rows[0]
    assert "before the response is sent" in rows[0]
    refused = _instrumented("flask", collector, "--cold", "-1")
    assert refused.returncode == 2 and "--cold needs at least 1 MB" in refused.stderr
    refused = _instrumented("flask", collector, "--cold", "2", "--block", "1")
    assert refused.returncode == 2 and "--cold needs --block of 2 or more" in refused.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_each_part_switches_off_what_it_names_and_back_on(framework: str, collector: str) -> None:
    """--check: one request with each part on, off and on again, read from the running pipeline."""
    done = _instrumented(framework, collector, "--check")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])["check"]
    assert list(report) == PARTS
    on = report["none"]["on"]
    # with every part on, one request leaves one span and one log record, both with both keys
    assert (on["spans"], on["logs"], on["log trace"]) == (1, 1, [True])
    assert on["span keys"] == on["log keys"] == ["orderId", "requestId"]
    assert on["recorded"] == ["http.server.request.duration", "orders.lookups"]
    assert (on["span exports"], on["log exports"], on["exemplars"]) == (1, 1, True)
    assert report["none"]["changed"] == []
    off = {name: part["off"] for name, part in report.items()}
    assert (off["server wrapper"]["spans"], off["server wrapper"]["log keys"]) == (0, [])
    assert off["server wrapper"]["recorded"] == ["orders.lookups"]
    assert (off["server span"]["spans"], off["server span"]["log trace"]) == (0, [False])
    assert off["span processors"]["spans"] == 0
    assert off["span export"]["span exports"] == 0 and off["span export"]["spans"] == 1
    assert off["log records"]["logs"] == 0
    assert off["log export"]["log exports"] == 0 and off["log export"]["logs"] == 1
    assert off["request duration"]["recorded"] == ["orders.lookups"]
    assert off["exemplars"]["exemplars"] is False
    assert off["business metric"]["recorded"] == ["http.server.request.duration"]
    assert off["request keys"]["span keys"] == off["request keys"]["log keys"] == ["orderId"]
    assert off["route keys"]["span keys"] == off["route keys"]["log keys"] == ["requestId"]
    for name, part in report.items():
        assert part["ok"], (name, part)


def test_check_fails_a_part_that_changes_nothing() -> None:
    ablation = _ablation()
    requests: list[int] = []
    part = _Part(work=0)

    class Effects:
        def __call__(self, loop: Any) -> dict[str, Any]:
            loop(1)
            requests.append(1)
            return {"spans": 1, "logs": 1}

    ablation._Effects = Effects
    report = ablation.check(
        part.loop, {"log records": ("what", part.switch), "none": ("nothing", part.switch)}
    )
    assert report["log records"]["ok"] is False and report["log records"]["changed"] == []
    assert report["none"]["ok"] is True  # nothing expected, nothing changed
    assert len(requests) == 6 and part.on is True


@pytest.mark.e2e
def test_a_plain_process_is_refused_with_what_to_do() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ablation.py"), "--pairs", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "run it under opentelemetry-instrument" in done.stderr
