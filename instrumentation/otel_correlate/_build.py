"""Build the native engines of the otel-correlate stack, once per machine.

Three binaries are built from this repository's own files with the local Go
toolchain and the Go module proxy:

* ``otelcol-correlate``: our OpenTelemetry Collector distribution, from
  ``collector/manifest.yaml`` with the OpenTelemetry Collector Builder (ocb).
* ``loki``: ``engines/loki`` (our main over upstream Loki packages).
* ``tempo``: ``engines/tempo`` (our main over upstream Tempo packages).

They land in a cache directory outside the repository (``OTEL_CORRELATE_CACHE_DIR``,
default ``${XDG_CACHE_HOME:-~/.cache}/otel-correlate``), so every clone on the
machine shares them. Each binary is rebuilt only when the SHA-256 of its inputs
(manifest or go.mod/go.sum/main.go, the Go version, the builder pin and this
module's build recipe) changes; the digest is stored next to the binary.

Example:
    >>> from otel_correlate._build import ensure_binaries
    >>> paths = ensure_binaries(["loki"])  # doctest: +SKIP
    >>> paths["loki"].name  # doctest: +SKIP
    'loki'

From a shell, ``python -m otel_correlate._build [name ...]`` builds everything
(or the named engines) and prints where the binaries are.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "COLLECTOR_BUILDER_VERSION",
    "ENGINE_NAMES",
    "EngineBuildError",
    "binary_path",
    "cache_dir",
    "ensure_binaries",
    "input_digest",
    "source_root",
]

#: The OpenTelemetry Collector Builder release; must match the core/contrib
#: versions in collector/manifest.yaml (see engines/README.md, "Moving a pin").
COLLECTOR_BUILDER_VERSION = "v0.165.0"

#: Names accepted by :func:`ensure_binaries` and :func:`binary_path`.
ENGINE_NAMES: tuple[str, ...] = ("otelcol-correlate", "loki", "tempo")

#: Bump when the way binaries are built changes (flags, layout), so caches rebuild.
_RECIPE_VERSION = "1"
_HEARTBEAT_SECONDS = 15.0
_LOG_TAIL_LINES = 40
_GO_LDFLAGS = "-s -w"


class EngineBuildError(RuntimeError):
    """Building an engine failed; the message names the step, the log and a way out."""


@dataclass(frozen=True)
class _Engine:
    """How one binary is built.

    Attributes:
        name: Binary name, also the key in :func:`ensure_binaries`' result.
        inputs: Repository-relative files whose content decides a rebuild.
        workdir: Repository-relative directory the Go command runs in.
        env: Extra environment for the Go commands.
    """

    name: str
    inputs: tuple[str, ...]
    workdir: str
    env: Mapping[str, str] = field(default_factory=dict)


_ENGINES: dict[str, _Engine] = {
    "otelcol-correlate": _Engine(
        name="otelcol-correlate",
        inputs=("collector/manifest.yaml",),
        workdir="collector",
    ),
    "loki": _Engine(
        name="loki",
        inputs=("engines/loki/go.mod", "engines/loki/go.sum", "engines/loki/main.go"),
        workdir="engines/loki",
    ),
    "tempo": _Engine(
        name="tempo",
        inputs=("engines/tempo/go.mod", "engines/tempo/go.sum", "engines/tempo/main.go"),
        workdir="engines/tempo",
    ),
}


def cache_dir() -> Path:
    """The directory holding built binaries, tools and build logs.

    Example:
        >>> cache_dir().name  # doctest: +SKIP
        'otel-correlate'

    Returns:
        ``$OTEL_CORRELATE_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/otel-correlate``,
        else ``~/.cache/otel-correlate``. It is not created here.
    """
    explicit = os.environ.get("OTEL_CORRELATE_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "otel-correlate"


def binary_path(name: str) -> Path:
    """Where the binary ``name`` lives in the cache (whether or not it is built yet).

    Example:
        >>> binary_path("loki").parent.name
        'bin'

    Args:
        name: One of :data:`ENGINE_NAMES`.

    Raises:
        ValueError: ``name`` is not an engine this module builds.
    """
    _engine(name)
    return cache_dir() / "bin" / name


def source_root() -> Path:
    """The repository checkout holding ``collector/`` and ``engines/``.

    Raises:
        EngineBuildError: This module is not running from a checkout (for example an
            installed wheel), so there is nothing to build from.
    """
    for candidate in Path(__file__).resolve().parents:
        if (candidate / "collector" / "manifest.yaml").is_file() and (candidate / "engines").is_dir():
            return candidate
    raise EngineBuildError(
        f"cannot find collector/manifest.yaml above {Path(__file__).resolve()}: the engines are "
        "built from a git checkout of otel-correlate. Run from a clone (pip install -e .)."
    )


def input_digest(name: str, *, root: Path, go_version: str) -> str:
    """SHA-256 over everything that decides the content of binary ``name``.

    Example:
        >>> input_digest("loki", root=source_root(), go_version="go1.26.8")  # doctest: +SKIP
        '3f1c...'

    Args:
        name: One of :data:`ENGINE_NAMES`.
        root: Repository root the engine's input files are read from.
        go_version: ``go env GOVERSION`` of the toolchain that will build it.

    Raises:
        ValueError: ``name`` is unknown.
        FileNotFoundError: An input file is missing.
    """
    engine = _engine(name)
    digest = hashlib.sha256()
    header = [
        f"recipe={_RECIPE_VERSION}",
        f"engine={engine.name}",
        f"go={go_version}",
        f"ldflags={_GO_LDFLAGS}",
        f"platform={sys.platform}/{os.uname().machine}",
    ]
    if name == "otelcol-correlate":
        header.append(f"builder={COLLECTOR_BUILDER_VERSION}")
    digest.update("\n".join(header).encode())
    for relative in engine.inputs:
        content = (root / relative).read_bytes()
        digest.update(f"\n--- {relative} {len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


def ensure_binaries(
    names: Sequence[str] | None = None,
    *,
    progress: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Build whichever of the engines are missing or stale, and return their paths.

    Builds run one at a time (each is CPU-heavy), at low priority and with Go's
    package parallelism capped, so a small machine stays usable. A first build
    of all three takes several minutes; progress lines arrive at least every
    15 seconds.

    Example:
        >>> paths = ensure_binaries(["otelcol-correlate"])  # doctest: +SKIP
        [otel-correlate build] otelcol-correlate: up to date (...)

    Args:
        names: Engines to build, default all of :data:`ENGINE_NAMES`.
        progress: Receives one human-readable line per event (default ``print``).

    Returns:
        Engine name to the path of its executable in :func:`cache_dir`.

    Raises:
        ValueError: A name is not one of :data:`ENGINE_NAMES`.
        EngineBuildError: Go is missing or a build step failed; the message names the
            step, shows the tail of its log and says what to do.
    """
    wanted = list(ENGINE_NAMES if names is None else names)
    for name in wanted:
        _engine(name)
    root = source_root()
    go = _find_go()
    go_version = _go_version(go)
    result: dict[str, Path] = {}
    for name in wanted:
        result[name] = _ensure_one(name, root=root, go=go, go_version=go_version, progress=progress)
    return result


def _engine(name: str) -> _Engine:
    try:
        return _ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINE_NAMES)}") from None


def _find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise EngineBuildError(
            "the Go toolchain ('go') is not on PATH. Install Go 1.26 or newer "
            "(https://go.dev/dl/) and make sure `go version` works, then retry."
        )
    return go


def _go_version(go: str) -> str:
    completed = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=False, timeout=60
    )
    if completed.returncode != 0 or not completed.stdout.strip():
        raise EngineBuildError(f"`{go} env GOVERSION` failed: {completed.stderr.strip() or 'no output'}")
    return completed.stdout.strip()


def _ensure_one(name: str, *, root: Path, go: str, go_version: str, progress: Callable[[str], None]) -> Path:
    engine = _engine(name)
    target = binary_path(name)
    digest_file = target.with_name(f"{name}.inputs-sha256")
    wanted = input_digest(name, root=root, go_version=go_version)
    with _build_lock(name):
        if target.is_file() and _read_text(digest_file) == wanted:
            progress(f"[otel-correlate build] {name}: up to date ({target})")
            return target
        reason = "not built yet" if not target.is_file() else "inputs changed"
        progress(f"[otel-correlate build] {name}: building ({reason}); log: {_log_path(name)}")
        started = time.monotonic()
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{name}.staged")
        if name == "otelcol-correlate":
            _build_collector(root=root, go=go, staged=staged, progress=progress)
        else:
            _build_go_main(engine, root=root, go=go, staged=staged, progress=progress)
        os.replace(staged, target)
        digest_file.write_text(wanted + "\n")
        elapsed = time.monotonic() - started
        size_mib = target.stat().st_size / (1024 * 1024)
        progress(f"[otel-correlate build] {name}: built in {_clock(elapsed)}, {size_mib:.1f} MiB -> {target}")
        return target


def _build_collector(*, root: Path, go: str, staged: Path, progress: Callable[[str], None]) -> None:
    tools = cache_dir() / "tools" / f"builder-{COLLECTOR_BUILDER_VERSION}"
    builder = tools / "builder"
    if not builder.is_file():
        _run_step(
            "otelcol-correlate",
            "install the collector builder (ocb)",
            [go, "install", f"go.opentelemetry.io/collector/cmd/builder@{COLLECTOR_BUILDER_VERSION}"],
            cwd=root,
            env={"GOBIN": str(tools)},
            progress=progress,
        )
    output = cache_dir() / "build" / "otelcol-correlate"
    if output.exists():
        shutil.rmtree(output)
    output.parent.mkdir(parents=True, exist_ok=True)  # ocb creates only the last level
    _run_step(
        "otelcol-correlate",
        "build the collector from collector/manifest.yaml",
        [
            str(builder),
            f"--config={root / 'collector' / 'manifest.yaml'}",
            f"--output-path={output}",
        ],
        cwd=root / "collector",
        env={},
        progress=progress,
    )
    shutil.copy2(output / "otelcol-correlate", staged)


def _build_go_main(
    engine: _Engine, *, root: Path, go: str, staged: Path, progress: Callable[[str], None]
) -> None:
    _run_step(
        engine.name,
        f"go build in {engine.workdir}",
        [go, "build", "-trimpath", f"-ldflags={_GO_LDFLAGS}", "-o", str(staged), "."],
        cwd=root / engine.workdir,
        env=dict(engine.env),
        progress=progress,
    )


def _run_step(
    name: str,
    step: str,
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    progress: Callable[[str], None],
) -> None:
    log = _log_path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **_go_env(), **env}
    progress(f"[otel-correlate build] {name}: {step} ...")
    started = time.monotonic()
    with log.open("a") as sink:
        sink.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {step}\n$ {' '.join(argv)}\n")
        sink.flush()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_lower_priority,  # only os.nice: safe between fork and exec
        )
        next_beat = started + _HEARTBEAT_SECONDS
        try:
            while process.poll() is None:
                time.sleep(0.5)
                now = time.monotonic()
                if now >= next_beat:
                    progress(
                        f"[otel-correlate build] {name}: {step} still running "
                        f"({_clock(now - started)} elapsed; log: {log})"
                    )
                    next_beat = now + _HEARTBEAT_SECONDS
        except BaseException:
            process.kill()
            process.wait()
            raise
    if process.returncode != 0:
        raise EngineBuildError(
            f"building {name} failed at step '{step}' (exit code {process.returncode}, "
            f"after {_clock(time.monotonic() - started)}).\n"
            f"Last lines of {log}:\n{_tail(log, _LOG_TAIL_LINES)}\n"
            "What to do: read the log above. 'go: ... 403' or 'dial tcp' means the Go module "
            "proxy could not serve a module (check network access to proxy.golang.org and "
            "GOPROXY); a compile error means a pin moved without its code (see engines/README.md, "
            f"'Moving a pin'). Retry with `python -m otel_correlate._build {name}`."
        )
    progress(f"[otel-correlate build] {name}: {step} done in {_clock(time.monotonic() - started)}")


def _go_env() -> dict[str, str]:
    """Environment for every Go command: capped package parallelism, sane flags."""
    jobs = max(1, (os.cpu_count() or 2) - 1)
    flags = os.environ.get("GOFLAGS", "").split()
    flags = [f for f in flags if not f.startswith("-p=")] + [f"-p={jobs}"]
    if not any(f.startswith("-buildvcs") for f in flags):
        flags.append("-buildvcs=false")
    return {"GOFLAGS": " ".join(flags), "CGO_ENABLED": os.environ.get("CGO_ENABLED", "0")}


def _lower_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(10)


@contextlib.contextmanager
def _build_lock(name: str) -> Iterator[None]:
    """Serialise builds of one engine across processes (e.g. parallel test workers)."""
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log_path(name: str) -> Path:
    return cache_dir() / "logs" / f"{name}.log"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def main(argv: Sequence[str] | None = None) -> int:
    """Build the named engines (default all) and print their paths.

    Example:
        >>> main(["loki"])  # doctest: +SKIP
        0
    """
    names = list(sys.argv[1:] if argv is None else argv) or None
    try:
        paths = ensure_binaries(names)
    except (EngineBuildError, ValueError) as exc:
        print(f"otel-correlate build: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
