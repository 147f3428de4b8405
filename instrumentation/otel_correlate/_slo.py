"""SLO spec → Prometheus recording rules and multi-window multi-burn-rate alerts.

The spec (``alerts/slo/*.yaml``) names a service and its SLOs, each with an
objective and an SLI given as ``errors``/``total`` or ``good``/``total`` series
selectors. The generator writes one rule group per SLO: the error ratio recorded
over every window the alerts need, then two alerts that share a name (mixin
style, so Alertmanager inhibits the ticket while the page fires):

* ``critical`` (page): burn rate 14.4 over 1h and 5m, or 6 over 6h and 30m;
* ``warning`` (ticket): burn rate 1 over 3d and 6h.

Example:
    $ python -m otel_correlate._slo            # rewrite alerts/slo.yml
    $ python -m otel_correlate._slo --check    # exit 1 when alerts/slo.yml is stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
SPEC_DIR = ROOT / "alerts" / "slo"
OUTPUT = ROOT / "alerts" / "slo.yml"
RUNBOOK_BASE = "https://github.com/otel-correlate/otel-correlate/blob/main/docs/runbooks"


@dataclass(frozen=True)
class BurnRateWindow:
    """One multi-window condition: the error ratio exceeds ``factor`` times the budget over both windows."""

    factor: float
    long: str
    short: str


#: Page and ticket conditions for a 30-day SLO (Google SRE workbook, chapter 5).
PAGE = (BurnRateWindow(14.4, "1h", "5m"), BurnRateWindow(6, "6h", "30m"))
TICKET = (BurnRateWindow(1, "3d", "6h"),)
PAGE_FOR = "2m"
TICKET_FOR = "1h"


@dataclass(frozen=True)
class SLO:
    """One objective of a service; exactly one of ``errors`` and ``good`` is set."""

    service: str
    name: str
    objective: float
    description: str
    total: str
    dashboard_url: str
    errors: str | None = None
    good: str | None = None

    @property
    def alert_name(self) -> str:
        """CamelCase alert name, e.g. ``OrdersAvailabilityErrorBudgetBurn``."""
        words = f"{self.service} {self.name}".replace("-", " ").replace("_", " ").split()
        return "".join(word[:1].upper() + word[1:] for word in words) + "ErrorBudgetBurn"

    @property
    def budget(self) -> float:
        return 1 - self.objective

    def error_ratio(self, window: str) -> str:
        """PromQL for the share of bad events over ``window``."""
        total = f"sum(rate({self.total}[{window}]))"
        if self.errors is not None:
            return f"sum(rate({self.errors}[{window}])) / {total}"
        return f"1 - (sum(rate({self.good}[{window}])) / {total})"


class SpecError(ValueError):
    """The SLO spec is not usable; the message names the file, the SLO and the field."""


def _number(value: float) -> str:
    return f"{value:.6g}"


def load_spec(path: Path) -> list[SLO]:
    """Read one spec file.

    Raises:
        SpecError: a field is missing or has the wrong type or range.
    """
    import yaml

    data: Any = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("service"), str):
        raise SpecError(f"{path}: needs a top-level `service: <name>` and a list `slos`")
    slos: list[SLO] = []
    for index, raw in enumerate(data.get("slos") or []):
        where = f"{path}: slos[{index}]"
        if not isinstance(raw, dict):
            raise SpecError(f"{where}: must be a mapping")
        objective = raw.get("objective")
        if not isinstance(objective, float) or not 0 < objective < 1:
            raise SpecError(f"{where}: objective={objective!r} must be a ratio between 0 and 1, e.g. 0.999")
        if ("errors" in raw) == ("good" in raw):
            raise SpecError(f"{where}: set exactly one of `errors` and `good` (got {sorted(raw)})")
        for field in ("name", "total", "description"):
            if not isinstance(raw.get(field), str):
                raise SpecError(f"{where}: `{field}` must be a string")
        slos.append(
            SLO(
                service=data["service"],
                name=raw["name"],
                objective=objective,
                description=raw["description"],
                total=raw["total"],
                errors=raw.get("errors"),
                good=raw.get("good"),
                dashboard_url=str(data.get("dashboard_url", "")),
            )
        )
    if not slos:
        raise SpecError(f"{path}: `slos` is empty")
    return slos


def _windows() -> list[str]:
    seen: dict[str, None] = {}
    for window in (*PAGE, *TICKET):
        seen.setdefault(window.short)
        seen.setdefault(window.long)
    return sorted(seen, key=_seconds)


def _seconds(duration: str) -> int:
    units = {"m": 60, "h": 3600, "d": 86400}
    return int(duration[:-1]) * units[duration[-1]]


def _recorded(slo: SLO, window: str) -> str:
    return f'slo:sli_error:ratio_rate{window}{{service="{slo.service}", slo="{slo.name}"}}'


def _condition(slo: SLO, windows: Sequence[BurnRateWindow]) -> str:
    parts = []
    for window in windows:
        threshold = _number(window.factor * slo.budget)
        parts.append(
            f"({_recorded(slo, window.long)} > {threshold} and {_recorded(slo, window.short)} > {threshold})"
        )
    return "\nor\n".join(parts) + "\n"


def _alert(slo: SLO, *, severity: str, windows: Sequence[BurnRateWindow], hold: str) -> dict[str, Any]:
    objective = f"{_number(slo.objective * 100)} %"
    conditions = ", ".join(f"{_number(w.factor)}x over {w.long} and {w.short}" for w in windows)
    kind = "page" if severity == "critical" else "ticket"
    return {
        "alert": slo.alert_name,
        "expr": _condition(slo, windows),
        "for": hold,
        "labels": {"severity": severity},
        "annotations": {
            "summary": f"The {slo.service} {slo.name} SLO burns its error budget too fast ({kind}).",
            "description": (
                f"{{{{ $labels.service }}}} {{{{ $labels.slo }}}}: {{{{ $value | humanizePercentage }}}} of "
                f"requests missed the objective ({slo.description}; objective {objective}) over the long "
                f"window; {kind} condition: {conditions}."
            ),
            "runbook_url": f"{RUNBOOK_BASE}/{slo.alert_name}.md",
            "dashboard_url": slo.dashboard_url,
        },
    }


def rule_groups(slos: Sequence[SLO]) -> dict[str, Any]:
    """The Prometheus rule file for ``slos`` as a mapping ready for YAML."""
    groups = []
    for slo in slos:
        labels = {"service": slo.service, "slo": slo.name}
        rules: list[dict[str, Any]] = [
            {"record": "slo:objective:ratio", "expr": f"vector({_number(slo.objective)})", "labels": labels}
        ]
        rules += [
            {"record": f"slo:sli_error:ratio_rate{window}", "expr": slo.error_ratio(window), "labels": labels}
            for window in _windows()
        ]
        rules.append(_alert(slo, severity="critical", windows=PAGE, hold=PAGE_FOR))
        rules.append(_alert(slo, severity="warning", windows=TICKET, hold=TICKET_FOR))
        groups.append({"name": f"slo-{slo.service}-{slo.name}", "rules": rules})
    return {"groups": groups}


def render(spec_dir: Path = SPEC_DIR) -> str:
    """The text of ``alerts/slo.yml`` for every spec in ``spec_dir``."""
    import yaml

    slos = [slo for path in sorted(spec_dir.glob("*.yaml")) for slo in load_spec(path)]
    header = (
        "# GENERATED by `python -m otel_correlate._slo` from alerts/slo/*.yaml - do not edit.\n"
        "# Recording rules slo:sli_error:ratio_rate<window> and multi-window multi-burn-rate alerts.\n"
        "# Tests: alerts/tests/slo.test.yml. Runbooks: docs/runbooks/<AlertName>.md.\n"
    )

    class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no stubs here
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    body: str = yaml.dump(rule_groups(slos), Dumper=_Dumper, sort_keys=False, width=200, allow_unicode=True)
    return header + body


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``alerts/slo.yml``, or with ``--check`` report whether it is stale."""
    parser = argparse.ArgumentParser(prog="python -m otel_correlate._slo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when alerts/slo.yml differs from the spec"
    )
    parser.add_argument("--spec-dir", type=Path, default=SPEC_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render(args.spec_dir)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run `python -m otel_correlate._slo`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
