"""Every environment variable the shipped configs read is documented in engines/README.md.

The collector expands ``${env:NAME:-default}`` (collector/*.yaml); Loki and Tempo
run with ``-config.expand-env=true`` and expand ``${NAME:-default}`` (stack/).
Prometheus and Alertmanager expand nothing, so their files must not look as if
they did.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "engines" / "README.md"
TABLE_HEADING = "Environment variables read by the configs"

#: ``${env:NAME}``, ``${env:NAME:-default}`` (the collector's syntax); ``$${...}`` is an escaped dollar.
COLLECTOR_VARIABLE = re.compile(r"(?<!\$)\$\{env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
#: ``${NAME}``, ``${NAME:-default}`` (dskit's -config.expand-env, used by Loki and Tempo).
EXPAND_ENV_VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
#: Configs whose engine expands variables, with the syntax it understands.
EXPANDING_CONFIGS = {
    "collector/*.yaml": COLLECTOR_VARIABLE,
    "stack/loki/*.yaml": EXPAND_ENV_VARIABLE,
    "stack/tempo/*.yaml": EXPAND_ENV_VARIABLE,
}


def _strings(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML document (keys and values; comments are not part of it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def variables_read(pattern: str, syntax: re.Pattern[str]) -> dict[str, dict[str, str]]:
    """``{NAME: {repo path: default}}`` of the variables the configs matching ``pattern`` read."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted(ROOT.glob(pattern)):
        for text in _strings(yaml.safe_load(path.read_text())):
            for match in syntax.finditer(text):
                relative = path.relative_to(ROOT).as_posix()
                found.setdefault(match["name"], {})[relative] = match["default"] or ""
    return found


def all_variables_read() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for pattern, syntax in EXPANDING_CONFIGS.items():
        for name, defaults in variables_read(pattern, syntax).items():
            found.setdefault(name, {}).update(defaults)
    return found


def documented() -> dict[str, tuple[str, str]]:
    """``{NAME: (used by, default)}`` from the table in engines/README.md."""
    text = README.read_text()
    assert TABLE_HEADING in text, f"{README.name} lost its heading {TABLE_HEADING!r}"
    rows: dict[str, tuple[str, str]] = {}
    lines = text[text.index(TABLE_HEADING) :].splitlines()
    table_started = False
    for line in lines[1:]:
        if not line.startswith("|"):
            if table_started:
                break
            continue
        table_started = True
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if cells[0] in ("Variable", "---"):
            continue
        assert len(cells) == 3, f"expected | Variable | Used by | Default |, got {line!r}"
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        assert names and len(names) == cells[0].count("`") // 2, (
            f"spell every variable out in full, one per backticked name: {cells[0]!r}"
        )
        for name in names:
            assert name not in rows, f"{name} is in the table twice"
            rows[name] = (cells[1], cells[2])
    return rows


def test_the_configs_read_variables_at_all() -> None:
    """A guard for the guard: a broken pattern must not make the next test pass vacuously."""
    found = all_variables_read()
    assert {
        "OTEL_CORRELATE_MEMORY_LIMIT_MIB",
        "OTEL_CORRELATE_TOKEN_FILE",
        "OTEL_CORRELATE_LOKI_PORT",
    } <= set(found)
    assert found["OTEL_CORRELATE_MEMORY_LIMIT_MIB"] == {
        "collector/agent.yaml": "256",
        "collector/config.yaml": "512",
    }
    assert "VAR" not in found, "a variable named in a comment is not one the config reads"


def test_every_variable_the_configs_read_is_in_the_engines_readme_table() -> None:
    missing = {
        name: sorted(where) for name, where in all_variables_read().items() if name not in documented()
    }
    assert missing == {}, f"add these to the table in {README.relative_to(ROOT)}"


def test_the_table_names_no_variable_the_configs_do_not_read() -> None:
    # The build reads OTEL_CORRELATE_CACHE_DIR (instrumentation/otel_correlate/_build.py), not a config.
    not_in_a_config = {"OTEL_CORRELATE_CACHE_DIR"}
    stale = set(documented()) - set(all_variables_read()) - not_in_a_config
    assert stale == set()


@pytest.mark.parametrize("name", sorted(all_variables_read()))
def test_the_table_gives_each_default_the_configs_use(name: str) -> None:
    rows = documented()
    if name not in rows:
        pytest.skip("not in the table at all; reported by the completeness test")
    _used_by, default_cell = rows[name]
    wrong = {
        where: default
        for where, default in all_variables_read()[name].items()
        if default and f"`{default}`" not in default_cell
    }
    assert wrong == {}, f"{name}: the table says {default_cell!r}"


def test_prometheus_and_alertmanager_configs_use_no_variables() -> None:
    """Neither expands the environment: a ``${...}`` there would be taken literally."""
    literal = {
        path.relative_to(ROOT).as_posix(): EXPAND_ENV_VARIABLE.findall(
            " ".join(_strings(yaml.safe_load(path.read_text())))
        )
        for folder in ("stack/prometheus", "stack/alertmanager")
        for path in sorted((ROOT / folder).rglob("*.y*ml"))
    }
    assert {path: names for path, names in literal.items() if names} == {}
