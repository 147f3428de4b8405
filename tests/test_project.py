"""The project's own promises about itself: public API, settings table, entry points."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import otel_correlate
from otel_correlate import _settings

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_sorted_and_complete() -> None:
    assert otel_correlate.__all__ == sorted(otel_correlate.__all__)
    assert set(otel_correlate.__all__) == set(otel_correlate._EXPORTS)
    for name in otel_correlate.__all__:
        value = getattr(otel_correlate, name)
        assert value.__module__ == f"otel_correlate.{otel_correlate._EXPORTS[name]}", name
    assert set(otel_correlate.__all__) <= set(dir(otel_correlate))


def test_importing_the_package_loads_no_web_framework_or_http_client() -> None:
    """opentelemetry-instrument imports the package in every service: it must stay light."""
    code = (
        "import sys, otel_correlate, otel_correlate._distro; "
        "print(sorted(m for m in ('fastapi', 'flask', 'httpx', 'pydantic', 'starlette') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_readme_configuration_table_matches_the_settings_registry() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", readme, re.S)
    assert match, "README.md lacks the <!-- settings:start/end --> block"
    assert match.group(1) == _settings.markdown_table(), (
        "README's configuration table is stale: regenerate it with `otel-correlate settings --update-readme README.md`"
    )


def test_every_setting_is_prefixed_and_documented() -> None:
    for setting in _settings.SETTINGS:
        assert setting.env.startswith("OTEL_CORRELATE_"), setting.env
        assert setting.doc.endswith("."), setting.env


def test_bad_setting_value_names_the_variable_the_value_and_the_default(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OTEL_CORRELATE_MAX_VALUE_LENGTH", "zero")
    with pytest.raises(_settings.SettingError) as refused:
        _settings.MAX_VALUE_LENGTH.get()
    assert str(refused.value) == (
        "OTEL_CORRELATE_MAX_VALUE_LENGTH='zero' is not valid: invalid literal for int() with base 10: 'zero'. "
        "Unset it to use the default (128)."
    )


def test_distro_configurator_and_pytest_plugin_are_registered() -> None:
    entry_points = metadata.distribution("otel-correlate").entry_points
    registered = {(ep.group, ep.name, ep.value) for ep in entry_points}
    assert {
        ("opentelemetry_distro", "otel_correlate", "otel_correlate._distro:CorrelateDistro"),
        ("opentelemetry_configurator", "otel_correlate", "otel_correlate._distro:CorrelateConfigurator"),
        ("pytest11", "otel_correlate", "otel_correlate._pytest_plugin"),
        ("console_scripts", "otel-correlate", "otel_correlate._cli:main"),
    } <= registered


def test_a_request_id_header_that_is_not_a_header_name_is_refused_with_what_is_allowed(
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_REQUEST_ID_HEADER", "X Request☃")
    with pytest.raises(_settings.SettingError) as refused:
        _settings.REQUEST_ID_HEADER.get()
    assert str(refused.value) == (
        "OTEL_CORRELATE_REQUEST_ID_HEADER='X Request☃' is not valid: ' ☃' cannot be in an HTTP header "
        "name; use letters, digits and !#$%&'*+-.^_`|~. Unset it to use the default (X-Request-ID)."
    )
    monkeypatch.setenv("OTEL_CORRELATE_REQUEST_ID_HEADER", "X-Correlation_ID.v2")
    assert _settings.REQUEST_ID_HEADER.get() == "X-Correlation_ID.v2"
