"""Build the agent-tier collector (``otelcol-correlate-agent``) from ``collector/agent-manifest.yaml``.

The agent is a separate, small collector distribution with the load-balancing
exporter, pinned to its own builder release (see the manifest for why it cannot
share the main build's v0.165.0). It is built like the main collector, into the
same cache, and only when the SHA-256 of its inputs changes.

Example:
    >>> from otel_correlate._agent_build import ensure_agent_binary
    >>> ensure_agent_binary().name  # doctest: +SKIP
    'otelcol-correlate-agent'

From a shell: ``python -m otel_correlate._agent_build``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from otel_correlate import _build

__all__ = ["AGENT_BUILDER_VERSION", "AGENT_NAME", "agent_digest", "ensure_agent_binary"]

#: Builder release matching the versions in collector/agent-manifest.yaml.
AGENT_BUILDER_VERSION = "v0.160.0"
AGENT_NAME = "otelcol-correlate-agent"
_MANIFEST = "collector/agent-manifest.yaml"


def agent_digest(*, root: Path, go_version: str) -> str:
    """SHA-256 over the agent manifest, the Go version and the builder pin.

    Example:
        >>> len(agent_digest(root=_build.source_root(), go_version="go1.26.8"))
        64
    """
    digest = hashlib.sha256()
    digest.update(
        f"recipe=agent-1\ngo={go_version}\nbuilder={AGENT_BUILDER_VERSION}\n"
        f"platform={sys.platform}/{os.uname().machine}\n".encode()
    )
    digest.update((root / _MANIFEST).read_bytes())
    return digest.hexdigest()


def ensure_agent_binary(*, progress: Callable[[str], None] = print) -> Path:
    """Build the agent collector if it is missing or stale; return its path.

    Raises:
        EngineBuildError: Go is missing or a build step failed (the message shows the log tail).
    """
    root = _build.source_root()
    go = _build._find_go()
    wanted = agent_digest(root=root, go_version=_build._go_version(go))
    target = _build.cache_dir() / "bin" / AGENT_NAME
    digest_file = target.with_name(f"{AGENT_NAME}.inputs-sha256")
    with _build._build_lock(AGENT_NAME):
        if target.is_file() and _build._read_text(digest_file) == wanted:
            progress(f"[otel-correlate build] {AGENT_NAME}: up to date ({target})")
            return target
        started = time.monotonic()
        tools = _build.cache_dir() / "tools" / f"builder-{AGENT_BUILDER_VERSION}"
        builder = tools / "builder"
        if not builder.is_file():
            _build._run_step(
                AGENT_NAME,
                "install the collector builder (ocb)",
                [go, "install", f"go.opentelemetry.io/collector/cmd/builder@{AGENT_BUILDER_VERSION}"],
                cwd=root,
                env={"GOBIN": str(tools)},
                progress=progress,
            )
        output = _build.cache_dir() / "build" / AGENT_NAME
        if output.exists():
            shutil.rmtree(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        _build._run_step(
            AGENT_NAME,
            f"build the agent collector from {_MANIFEST}",
            [str(builder), f"--config={root / _MANIFEST}", f"--output-path={output}"],
            cwd=root / "collector",
            env={},
            progress=progress,
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{AGENT_NAME}.staged")
        shutil.copy2(output / AGENT_NAME, staged)
        os.replace(staged, target)
        digest_file.write_text(wanted + "\n")
        progress(
            f"[otel-correlate build] {AGENT_NAME}: built in {time.monotonic() - started:.0f}s -> {target}"
        )
        return target


if __name__ == "__main__":  # pragma: no cover - command line
    print(ensure_agent_binary())
