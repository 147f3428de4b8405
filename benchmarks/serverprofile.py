"""Where a served request's CPU goes: a py-spy profile of the live benchmark servers.

Starts each configuration as the overhead benchmark does (same server, same pinning,
same collector), loads it with wrk and, during the load, samples it with
``py-spy record --gil``: only the thread holding the GIL is sampled, so a thread
waiting for the GIL (behind an export thread, after a write) is not counted as
working, which a plain sampling profile does. py-spy reads the stacks without pausing
the server (pausing it for every sample made the uninstrumented server 20 % slower
here), so a stack can be read while it changes: only the innermost frame of a
sample is used, never the frames around it. Each sample goes to the package of its
innermost Python frame (the C code a Python function calls counts as that function's),
and each package's share of the request threads' samples is reported in microseconds
of their *user* CPU per request; their kernel time (system calls, during which no GIL
is held and nothing is sampled) is a row of its own, and the export threads' CPU
another (all from ``/proc``).

::

    .venv/bin/python benchmarks/serverprofile.py              # FastAPI: uninstrumented vs otel-correlate
    .venv/bin/python benchmarks/serverprofile.py --framework flask --rounds 5 --duration 10

It writes ``benchmarks/results/profile-<framework>.{md,json}``, and the raw samples
(``py-spy``'s collapsed stacks, a megabyte each, not committed) under ``profiles/``
there. Like every number here, compare configurations within one run: the machine's
speed moves between runs. (Not ``profile.py``: that name would hide the standard
library's ``profile`` module, which ``cProfile`` imports, for scripts run from here.)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (the benchmark's own server, collector and load helpers)

PACKAGE = "otel_correlate"


def py_spy() -> str:
    """The py-spy executable of this venv (``.[dev]`` installs it), else one on PATH."""
    found = run.MAIN_BIN / "py-spy"
    if found.exists():
        return str(found)
    other = shutil.which("py-spy")
    if other is None:
        raise SystemExit("py-spy is not installed: run `./run setup` (it is in the project's dev extra)")
    return other


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds of each thread of ``pid``, in the kernel's 10 ms ticks."""
    cpu: dict[int, tuple[float, float]] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[int(task.name)] = (int(fields[11]) / ticks, int(fields[12]) / ticks)
    return cpu


def where(frame: str) -> str:
    """The row a frame's time goes to: our package, an installed package, or a standard-library module.

    Frames are ``function (path:line)`` with full paths (``py-spy --full-filenames``):
    an installed package is the first folder under ``site-packages`` (or Debian's
    ``dist-packages``), our package also its own folder, a standard-library
    module the first name under ``lib/python3.X`` (or a ``<frozen ...>`` module), anything
    else (the benchmark's app) its file name.
    """
    if "(" not in frame or not frame.isascii():  # a stack read mid-change (py-spy samples without pausing)
        return "other"
    path = frame.rsplit("(", 1)[1].rsplit(":", 1)[0]
    for installed in ("/site-packages/", "/dist-packages/"):
        if installed in path:
            return path.rsplit(installed, 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.rsplit("/", 2)[-2:-1] == [PACKAGE]:  # our package's own folder (an editable install)
        return PACKAGE
    if path.startswith("<frozen "):
        return f"{path.removeprefix('<frozen ').removesuffix('>')} (stdlib)"
    _, sep, rest = path.partition("/lib/python3.")
    if sep and "/" in rest:
        return f"{rest.split('/', 2)[1].removesuffix('.py')} (stdlib)"
    return path.rsplit("/", 1)[-1].removesuffix(".py")


def function_of(frame: str) -> str:
    """``function (file)`` without the folder and line number: one row per function."""
    name, _, rest = frame.partition(" (")
    return f"{name} ({rest.rsplit(':', 1)[0].rsplit('/', 1)[-1]})"


def thread_of(label: str) -> tuple[int | None, str]:
    """``thread (28909): MainThread`` -> (28909, "MainThread")."""
    head, _, name = label.partition(": ")
    number = head.partition("(")[2].rstrip(")")
    return (int(number) if number.isdigit() else None), name


def is_export_thread(name: str) -> bool:
    """The SDK's batch processors' and metric reader's threads (``OtelBatch...``, ``OtelPeriodic...``)."""
    return name.startswith("Otel")


def aggregate(lines: Iterable[str]) -> dict[str, object]:
    """Samples per package and per function of our package (both by innermost frame) on the request
    threads, samples per thread kind, and the name of every thread seen."""
    packages: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    names: dict[int, str] = {}
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        label, *frames = stack.split(";")
        tid, name = thread_of(label)
        if tid is not None:
            names[tid] = name
        if is_export_thread(name):
            threads["export threads"] += samples
            continue
        threads["request threads"] += samples
        if not frames:
            continue
        innermost = where(frames[-1])
        packages[innermost] += samples
        if innermost == PACKAGE:
            ours[function_of(frames[-1])] += samples
    return {"threads": dict(threads), "packages": dict(packages), "ours": dict(ours), "names": names}


def profile_one(framework: str, config: str, opts: argparse.Namespace, raw: Path) -> dict[str, object]:
    """Serve ``config`` under wrk and sample it with py-spy into ``raw``: one round's counts."""
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.unlink(missing_ok=True)  # an earlier run's file must not pass for this one's
    spy: subprocess.Popen[bytes] | None = None
    with run.serving(framework, config, None) as (proc, url):
        try:
            run.wrk(url, 1, opts.connections)
            # the process that serves: gunicorn's (one) worker, or uvicorn itself
            pid = [proc.pid, *run._children(proc.pid)][-1]
            spy = subprocess.Popen(
                [
                    *run._taskset(1),
                    py_spy(),
                    "record",
                    "--pid",
                    str(pid),
                    "--gil",
                    "--threads",
                    "--full-filenames",
                    "--nonblocking",
                    "--rate",
                    str(opts.rate),
                    "--duration",
                    str(opts.duration),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(0.5)  # py-spy attaches before the load starts
            if spy.poll() is not None:  # it could not attach (no ptrace permission, say): say so now
                raise SystemExit(
                    f"py-spy failed ({spy.returncode}): {spy.communicate()[1].decode(errors='replace')}"
                )
            before = thread_cpu(pid)
            load = run.wrk(url, opts.duration - 1, opts.connections)
            after = thread_cpu(pid)
            _, errors = spy.communicate(timeout=opts.duration + 30)
            if spy.returncode != 0 or not raw.exists():
                raise SystemExit(
                    f"py-spy failed ({spy.returncode}): {errors.decode(errors='replace').strip()}"
                )
        finally:  # py-spy stopped on every path; the server by serving()
            if spy is not None and spy.poll() is None:
                spy.kill()
                spy.wait()
    counted = aggregate(raw.read_text().splitlines())
    names: dict[int, str] = counted["names"]  # type: ignore[assignment]
    samples: dict[str, int] = counted["threads"]  # type: ignore[assignment]
    export_tids = {tid for tid in after if is_export_thread(names.get(tid, ""))}
    if samples.get("export threads") and not export_tids:
        raise SystemExit(
            "py-spy's thread ids do not match /proc's: the export threads' CPU cannot be told apart"
        )
    # a thread that ended between the two reads took its CPU with it (none does under load)
    spent = {
        tid: (1e6 * (u - before.get(tid, (0.0, 0.0))[0]), 1e6 * (k - before.get(tid, (0.0, 0.0))[1]))
        for tid, (u, k) in after.items()
    }
    return {
        "requests": load["requests"],
        "rps": load["rps"],
        "request_threads_user_us": sum(u for tid, (u, _) in spent.items() if tid not in export_tids),
        "request_threads_system_us": sum(k for tid, (_, k) in spent.items() if tid not in export_tids),
        "export_threads_cpu_us": sum(u + k for tid, (u, k) in spent.items() if tid in export_tids),
        "threads": samples,
        "packages": counted["packages"],
        "ours": counted["ours"],
    }


def combine(rounds: list[dict[str, object]]) -> dict[str, object]:
    """One configuration's rounds as one result, in µs per request.

    Each package row is its share of all rounds' request-thread samples, in µs of those
    threads' user CPU: robust to py-spy missing samples when the other CPU is busy (it
    shares it with wrk and the collector), and to one noisy round. Kernel time is not
    spread over the rows: no GIL is held in a system call, so none of it is sampled.
    """

    def total(key: str) -> float:
        return sum(float(r[key]) for r in rounds)  # type: ignore[arg-type]

    def counts(key: str) -> collections.Counter[str]:
        summed: collections.Counter[str] = collections.Counter()
        for r in rounds:
            summed.update(r[key])  # type: ignore[arg-type]
        return summed

    requests = max(total("requests"), 1.0)
    samples = counts("threads")
    user = total("request_threads_user_us") / requests
    system = total("request_threads_system_us") / requests
    export = total("export_threads_cpu_us") / requests
    scale = user / max(samples["request threads"], 1)
    return {
        "rounds": len(rounds),
        "requests": int(requests),
        "rps": round(statistics.median(float(r["rps"]) for r in rounds)),  # type: ignore[arg-type]
        "cpu_us_per_request": round(user + system + export, 1),
        "request_threads_user_us": round(user, 1),
        "request_threads_system_us": round(system, 1),
        "export_threads_cpu_us": round(export, 1),
        "samples": dict(samples),
        "packages_us_per_request": {k: round(v * scale, 1) for k, v in counts("packages").items()},
        "ours_us_per_request": {k: round(v * scale, 1) for k, v in counts("ours").items()},
    }


def markdown(framework: str, results: dict[str, dict[str, object]]) -> str:
    configs = list(results)
    base, last = configs[0], configs[-1]

    def row(name: str, values: list[float]) -> str:
        cells = " | ".join(f"{v:.1f}" for v in values)
        return f"| {name} | {cells} | {values[-1] - values[0]:+.1f} |"

    head = f"| {framework}, µs per request | " + " | ".join(configs) + " | difference |"
    lines = [head, "| --- |" + " ---: |" * (len(configs) + 1)]
    for key, label in (
        ("cpu_us_per_request", "CPU, the serving process's threads"),
        ("export_threads_cpu_us", "of which the SDK's export threads"),
        ("request_threads_system_us", "of which the request threads in the kernel (system calls)"),
        ("request_threads_user_us", "of which the request threads in user space, by package:"),
    ):
        lines.append(row(label, [float(results[c][key]) for c in configs]))  # type: ignore[arg-type]
    packages: dict[str, dict[str, float]] = {c: results[c]["packages_us_per_request"] for c in configs}  # type: ignore[misc]
    names = sorted(
        set().union(*packages.values()),
        key=lambda n: -(packages[last].get(n, 0.0) - packages[base].get(n, 0.0)),
    )
    for name in names:
        values = [packages[c].get(name, 0.0) for c in configs]
        if max(values) >= 0.5:
            lines.append(row(f"in {name}", values))
    ours: dict[str, float] = results[last]["ours_us_per_request"]  # type: ignore[assignment]
    top = sorted(ours.items(), key=lambda item: -item[1])[:15]
    lines += [
        "",
        f"{last}: its functions' own time on the request threads (with the C code they call):",
        "",
    ]
    lines += [f"- {us:.1f} µs {name}" for name, us in top]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=run.FRAMEWORKS, default="fastapi")
    parser.add_argument("--configs", default="uninstrumented,otel-correlate", help="compared in this order")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, pooled (at least 1)")
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per configuration and round")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--port-base", type=int, default=24000, help="as for run.py")
    opts = parser.parse_args(argv)
    run.PORTS.update({name: opts.port_base + offset for name, offset in run.PORT_OFFSETS.items()})
    if opts.duration < 2 or opts.rounds < 1:
        parser.error("--duration must be at least 2 seconds (py-spy attaches first) and --rounds at least 1")
    signal.signal(
        signal.SIGTERM, run._terminate
    )  # unwinds through the finally blocks that stop every process
    opts.out.mkdir(parents=True, exist_ok=True)
    configs = opts.configs.split(",")
    rounds: dict[str, list[dict[str, object]]] = {config: [] for config in configs}
    with run.collector():
        for round_no in range(opts.rounds):
            # interleaved, the order rotated each round, as run.py runs its configurations
            for config in configs[round_no % len(configs) :] + configs[: round_no % len(configs)]:
                raw = (
                    opts.out
                    / "profiles"
                    / f"{opts.framework}-{config.replace('@', '-at-')}-{round_no + 1}.txt"
                )
                rounds[config].append(profile_one(opts.framework, config, opts, raw))
    results = {config: combine(done) for config, done in rounds.items()}
    table = markdown(opts.framework, results)
    (opts.out / f"profile-{opts.framework}.json").write_text(json.dumps(results, indent=2) + "\n")
    (opts.out / f"profile-{opts.framework}.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
