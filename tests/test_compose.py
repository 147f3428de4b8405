"""docker-compose.otel.yml, checked without Docker.

No Docker engine runs here, so the file is validated against the compose
specification's JSON schema (fetched once from PyPI by scripts/compose_schema.py)
and read as data: what it mounts, publishes, pins and sets must match the repo
and the native stack it mirrors.
"""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml
from scripts import compose_alertmanager, compose_schema

from otel_correlate import _stack

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.otel.yml"
#: Inside every container the repository's files are at /otel-correlate/<repo path>.
REPO_IN_CONTAINER = PurePosixPath("/otel-correlate")
#: The one repo folder mounted somewhere other than its own path: compose's scrape targets.
OVERLAYS = {"stack/compose/prometheus/targets": "stack/prometheus/targets"}

ENGINES = ("otel-collector", "tempo", "loki", "prometheus", "alertmanager", "grafana")
DEMO_SERVICES = {"demo-install", "notifications", "telegram-stub", "orders", "traffic"}
#: Compose service name -> native launcher engine name (instrumentation/otel_correlate/_stack.py).
NATIVE_NAMES = {
    "otel-collector": "collector",
    "tempo": "tempo",
    "loki": "loki",
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
}
NATIVE_CONFIGS = {
    "otel-collector": "collector/config.yaml",
    "tempo": "stack/tempo/tempo.yaml",
    "loki": "stack/loki/loki.yaml",
    "prometheus": "stack/prometheus/prometheus.yml",
    "alertmanager": "stack/alertmanager/alertmanager.yml",
}
#: What compose runs: the native configs, except Alertmanager's copy generated for 0.28 (bot_token_file).
COMPOSE_CONFIGS = {**NATIVE_CONFIGS, "alertmanager": "stack/compose/alertmanager/alertmanager.yml"}
#: Where the Alertmanager config reads its secret files, in containers as natively.
SECRETS_IN_CONTAINER = PurePosixPath("/etc/otel-correlate/secrets")
#: The only variable compose requires: a file, outside the repository, holding Grafana's admin password.
GRAFANA_PASSWORD_FILE = "/home/operator/.config/otel-correlate/grafana_admin_password"

_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(LookupError):
    """A ``${VAR:?message}`` whose variable is unset."""


def _interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one value: ``$$``, ``${V}``, ``${V:-d}``, ``${V-d}``, ``${V:?m}``, ``${V?m}``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = env.get(name)
        unset_or_empty = not value
        if op in (":-", "-"):
            return arg if (value is None or (op == ":-" and unset_or_empty)) else str(value)
        if op in (":?", "?"):
            if value is None or (op == ":?" and unset_or_empty):
                raise MissingVariable(f"{name}: {arg}")
            return value
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """The compose file as compose sees it with ``env`` as the shell environment."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if isinstance(node, str):
        return _interpolate_text(node, env)
    return node


def raw_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file interpolated with only the variable it requires set (and ``env``)."""
    data: dict[str, Any] = interpolate(
        raw_compose(), {"GRAFANA_ADMIN_PASSWORD_FILE": GRAFANA_PASSWORD_FILE, **(env or {})}
    )
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def mounts(service: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """``(source, target, mode)`` of each short-syntax volume entry."""
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax (source:target[:mode]), not {entry!r}"
        source, target, *mode = entry.split(":")
        yield source, target, mode[0] if mode else "rw"


def is_bind(source: str) -> bool:
    return source.startswith((".", "/"))


def secret_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """``{path in the container: secret name}`` of a service's secrets (default target /run/secrets/<name>)."""
    found = {}
    for entry in service.get("secrets", []):
        name, target = (entry, entry) if isinstance(entry, str) else (entry["source"], entry.get("target"))
        path = PurePosixPath("/run/secrets") / (target or name)  # an absolute target replaces the folder
        found[path.as_posix()] = name
    return found


def repo_path_of(service: Mapping[str, Any], container_path: str) -> str | None:
    """The repo-relative path a container path comes from through the service's bind mounts."""
    path = PurePosixPath(container_path)
    best: tuple[int, str] | None = None
    for source, target, _mode in mounts(service):
        if not is_bind(source):
            continue
        target_path = PurePosixPath(target)
        if path == target_path or target_path in path.parents:
            depth = len(target_path.parts)
            if best is None or depth > best[0]:
                host = (ROOT / source / path.relative_to(target_path)).resolve()
                best = (depth, host.relative_to(ROOT).as_posix())
    return best[1] if best else None


def config_flag_value(argv: list[str]) -> str:
    """The value of ``--config=``/``-config.file=``/``--config.file=`` in a command line."""
    values = [arg.split("=", 1)[1] for arg in argv if re.match(r"^--?config(\.file)?=", arg)]
    assert len(values) == 1, f"expected exactly one config flag in {argv}"
    return values[0]


@pytest.fixture(scope="session")
def compose_spec() -> dict[str, Any]:
    return compose_schema.load_schema()


def _schema_errors(schema: dict[str, Any], document: Any) -> list[str]:
    # The schema names draft 2019-09 by a URI jsonschema does not know (http, trailing #).
    assert schema["$schema"].startswith("http://json-schema.org/draft/2019-09/")
    validator = jsonschema.Draft201909Validator(schema)
    return sorted(
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    )


def test_compose_file_is_valid_against_the_compose_specification(compose_spec: dict[str, Any]) -> None:
    assert _schema_errors(compose_spec, raw_compose()) == []
    assert _schema_errors(compose_spec, compose()) == []


def test_compose_schema_rejects_a_misspelt_service_key(compose_spec: dict[str, Any]) -> None:
    broken = copy.deepcopy(raw_compose())
    broken["services"]["loki"]["comand"] = broken["services"]["loki"].pop("command")
    assert _schema_errors(compose_spec, broken) == [
        "services/loki: 'comand' does not match any of the regexes: '^x-'"
    ]


def test_compose_file_runs_every_engine_and_the_demo_services() -> None:
    assert set(services()) == {"volume-permissions", *ENGINES, *DEMO_SERVICES}


def test_every_image_is_pinned_to_an_exact_version() -> None:
    images = {name: service["image"] for name, service in services().items()}
    unpinned = {
        name: image
        for name, image in images.items()
        if not re.fullmatch(r"[a-z0-9./-]+:v?\d+\.\d+\.\d+(-[A-Za-z0-9.]+)*", image)
    }
    assert unpinned == {}, "pin every image to an exact version tag (never `latest` or a bare major/minor)"
    repositories = {name: image.rsplit(":", 1)[0] for name, image in images.items() if name in ENGINES}
    assert repositories == {
        "otel-collector": "otel/opentelemetry-collector-contrib",
        "tempo": "grafana/tempo",
        "loki": "grafana/loki",
        "prometheus": "prom/prometheus",
        "alertmanager": "prom/alertmanager",
        "grafana": "grafana/grafana",
    }


def test_engine_images_match_the_native_pins() -> None:
    tags = {name: service["image"].rsplit(":", 1)[1] for name, service in services().items()}
    manifest = (ROOT / "collector" / "manifest.yaml").read_text()
    contrib = set(re.findall(r"opentelemetry-collector-contrib/\S+ v(\d+\.\d+\.\d+)", manifest))
    assert contrib == {tags["otel-collector"]}, (
        "the collector image must be the contrib release of collector/manifest.yaml"
    )
    loki = re.search(r"github.com/grafana/loki/v3 v(\S+)", (ROOT / "engines" / "loki" / "go.mod").read_text())
    assert loki and loki.group(1) == tags["loki"], (
        "the Loki image must be the release engines/loki/go.mod pins"
    )
    tempo = re.search(r"the Tempo (\d+\.\d+) line", (ROOT / "engines" / "tempo" / "go.mod").read_text())
    assert tempo and tags["tempo"].startswith(f"{tempo.group(1)}."), (
        "the Tempo image must be a release of the line engines/tempo/go.mod pins"
    )


def test_every_bind_mount_is_an_existing_repo_path_mounted_read_only() -> None:
    problems = []
    for name, service in services().items():
        for source, target, mode in mounts(service):
            if not is_bind(source):
                continue
            host = (ROOT / source).resolve()
            if not host.is_relative_to(ROOT):
                problems.append(f"{name}: {source} is outside the repository")
            elif not host.exists():
                problems.append(f"{name}: {source} does not exist in the repository")
            if mode != "ro":
                problems.append(f"{name}: {source}:{target} is not read-only")
    assert problems == []


def test_repo_files_sit_at_their_repo_path_inside_every_container() -> None:
    misplaced = {}
    for name, service in services().items():
        for source, target, _mode in mounts(service):
            if not is_bind(source):
                continue
            relative = (ROOT / source).resolve().relative_to(ROOT).as_posix()
            expected = REPO_IN_CONTAINER / OVERLAYS.get(relative, relative)
            if relative == ".":
                expected = REPO_IN_CONTAINER
            if PurePosixPath(target) != expected:
                misplaced[f"{name}: {source}"] = target
    assert misplaced == {}


def test_data_lives_in_declared_named_volumes() -> None:
    declared = set(compose()["volumes"])
    used = {
        source for service in services().values() for source, _t, _m in mounts(service) if not is_bind(source)
    }
    assert used == declared
    data_dirs = {}
    for name, service in services().items():
        env = service.get("environment", {})
        command = service.get("command", [])
        flags = dict(
            arg.split("=", 1)
            for arg in command
            if isinstance(arg, str) and arg.startswith("--") and "=" in arg
        )
        if "OTEL_CORRELATE_STATE_DIR" in env:
            sub = {"otel-collector": "collector"}.get(name, name)
            data_dirs[name] = f"{env['OTEL_CORRELATE_STATE_DIR']}/{sub}"
        for flag in ("--storage.tsdb.path", "--storage.path"):
            if flag in flags:
                data_dirs[name] = flags[flag]
    data_dirs["grafana"] = "/var/lib/grafana"
    volume_of = {
        name: {target: source for source, target, _m in mounts(services()[name]) if not is_bind(source)}
        for name in data_dirs
    }
    assert {name: volume_of[name].get(path) for name, path in data_dirs.items()} == {
        "otel-collector": "collector-data",
        "tempo": "tempo-data",
        "loki": "loki-data",
        "prometheus": "prometheus-data",
        "alertmanager": "alertmanager-data",
        "grafana": "grafana-data",
    }
    # The collector, Loki and Tempo run as uid 10001; the one-shot job hands each its volume.
    chowned = services()["volume-permissions"]["entrypoint"]
    assert chowned[:2] == ["chown", "10001:10001"]
    assert set(chowned[2:]) == {data_dirs["otel-collector"], data_dirs["loki"], data_dirs["tempo"]}
    for name in ("otel-collector", "loki", "tempo"):
        assert services()[name]["depends_on"]["volume-permissions"] == {
            "condition": "service_completed_successfully"
        }


def test_every_published_port_binds_loopback_only() -> None:
    published: dict[str, list[int]] = {}
    for name, service in services().items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: write ports as '127.0.0.1:HOST:CONTAINER', not {port!r}"
            host_ip, host_port, container_port = port.split(":")
            assert host_ip == "127.0.0.1", f"{name}: {port} is reachable from other machines"
            assert host_port == container_port
            published.setdefault(name, []).append(int(host_port))
    assert published == {
        "otel-collector": [4317, 4318, 13133, 8888],
        "tempo": [3200],
        "loki": [3100],
        "prometheus": [9090],
        "alertmanager": [9093],
        "grafana": [3000],
        "notifications": [8002],
        "orders": [8001],
    }
    native = {port for engine in _stack.ENGINES for port in engine.ports}
    engine_ports = {port for name in NATIVE_NAMES for port in published[name]}
    assert engine_ports <= native, "compose publishes the engines on the native stack's ports"


def test_no_password_or_secret_has_a_value_in_the_file() -> None:
    sensitive = re.compile(r"(?i)(password|passwd|secret|token|api_?key)")
    values = {
        f"{name}.{key}": value
        for name, service in raw_compose()["services"].items()
        for key, value in service.get("environment", {}).items()
        if sensitive.search(key)
    }
    assert values == {"grafana.GF_SECURITY_ADMIN_PASSWORD__FILE": "/run/secrets/grafana_admin_password"}
    # Every secret is a file on the host; none is inline, from the environment, or in the repository.
    declared = raw_compose()["secrets"]
    assert {name: set(secret) for name, secret in declared.items()} == {name: {"file"} for name in declared}
    assert declared["grafana_admin_password"]["file"] == (
        "${GRAFANA_ADMIN_PASSWORD_FILE:?set GRAFANA_ADMIN_PASSWORD_FILE to a file holding the Grafana "
        "admin password you want (none is shipped)}"
    )
    with pytest.raises(MissingVariable, match="^GRAFANA_ADMIN_PASSWORD_FILE: "):
        interpolate(raw_compose(), {})
    with pytest.raises(MissingVariable):
        interpolate(raw_compose(), {"GRAFANA_ADMIN_PASSWORD_FILE": ""})


def test_secrets_come_from_files_outside_the_repository_or_its_empty_stand_ins() -> None:
    operator = compose({"OTEL_CORRELATE_SECRETS_DIR": "/etc/otel-correlate/secrets"})["secrets"]
    assert {name: secret["file"] for name, secret in operator.items()} == {
        "grafana_admin_password": GRAFANA_PASSWORD_FILE,
        **{
            name: f"/etc/otel-correlate/secrets/{name}"
            for name in (
                "slack_webhook_url",
                "pagerduty_routing_key",
                "pagerduty_platform_routing_key",
                "smtp_password",
                "telegram_bot_token",
            )
        },
    }
    # Without OTEL_CORRELATE_SECRETS_DIR, Alertmanager gets empty files: the stack starts, those
    # receivers fail at send time (as natively without the files), and no value is in the repository.
    stand_ins = {
        name: ROOT / secret["file"]
        for name, secret in compose()["secrets"].items()
        if name != "grafana_admin_password"
    }
    assert {name: path.relative_to(ROOT).parent.as_posix() for name, path in stand_ins.items()} == {
        name: "stack/compose/empty-secrets" for name in stand_ins
    }
    assert {name: path.read_bytes() for name, path in stand_ins.items()} == {name: b"" for name in stand_ins}
    assert {path.name for path in (ROOT / "stack" / "compose" / "empty-secrets").iterdir()} == set(stand_ins)


def test_each_secret_is_mounted_only_where_it_is_read() -> None:
    mounted = {name: secret_mounts(service) for name, service in services().items() if "secrets" in service}
    assert mounted == {
        "grafana": {"/run/secrets/grafana_admin_password": "grafana_admin_password"},
        "alertmanager": {
            (SECRETS_IN_CONTAINER / name).as_posix(): name
            for name in (
                "slack_webhook_url",
                "pagerduty_routing_key",
                "pagerduty_platform_routing_key",
                "smtp_password",
                "telegram_bot_token",
            )
        },
    }
    assert set(compose()["secrets"]) == {name for paths in mounted.values() for name in paths.values()}


def _alertmanager_compose_config() -> dict[str, Any]:
    service = services()["alertmanager"]
    path = repo_path_of(service, config_flag_value(service["command"]))
    assert path is not None
    config: dict[str, Any] = yaml.safe_load((ROOT / path).read_text())
    return config


def test_compose_alertmanager_reads_the_telegram_bot_token_from_the_secret_file() -> None:
    # prom/alertmanager >= 0.26 has bot_token_file; the native 0.25 has not (it gets a rendered copy).
    major, minor, _patch = (
        int(part) for part in services()["alertmanager"]["image"].split(":v")[1].split(".")
    )
    assert (major, minor) >= (0, 26)
    telegram = [
        item
        for receiver in _alertmanager_compose_config()["receivers"]
        for item in receiver.get("telegram_configs", [])
    ]
    assert telegram and all("bot_token" not in item for item in telegram)
    assert {item["bot_token_file"] for item in telegram} == {"/etc/otel-correlate/secrets/telegram_bot_token"}
    assert secret_mounts(services()["alertmanager"])[telegram[0]["bot_token_file"]] == "telegram_bot_token"


def test_every_file_the_compose_alertmanager_config_reads_is_a_mounted_secret() -> None:
    text = yaml.safe_dump(_alertmanager_compose_config())
    files = set(re.findall(r"\b\w+_file: (\S+)", text))
    assert files and files <= set(secret_mounts(services()["alertmanager"]))


def test_no_default_grafana_login_is_anywhere_in_the_repository() -> None:
    """Grafana's built-in login is user and password "admin"; no file may set or suggest it.

    Token shapes (a Telegram bot token among them) are refused by tests/test_no_secrets.py.
    """
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    default_login = re.compile(r"(?i)\badmin[:/]admin\b|password\W{0,3}[:=]\W{0,3}admin\b")
    found = {}
    for name in filter(None, tracked):
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found.update({f"{name}:{m.start()}": m.group(0) for m in default_login.finditer(text)})
    assert found == {}


def test_grafana_refuses_anonymous_users_and_sign_up_and_takes_its_password_from_a_secret() -> None:
    env = services()["grafana"]["environment"]
    assert {key: env.get(key) for key in ("GF_AUTH_ANONYMOUS_ENABLED", "GF_USERS_ALLOW_SIGN_UP")} == {
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
    }
    assert env.get("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer") != "Admin"
    assert env["GF_USERS_ALLOW_ORG_CREATE"] == "false"
    # The admin is created, with the password read from the mounted secret, never from a literal.
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env.get("GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION", "false") == "false"
    password_file = env["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert secret_mounts(services()["grafana"])[password_file] == "grafana_admin_password"
    assert compose()["secrets"]["grafana_admin_password"] == {"file": GRAFANA_PASSWORD_FILE}
    assert env["GF_SECURITY_ADMIN_USER"] == "admin"  # a name; its password has no default


def test_grafana_is_provisioned_from_the_dashboards_folder() -> None:
    grafana = services()["grafana"]
    assert repo_path_of(grafana, grafana["environment"]["GF_PATHS_PROVISIONING"]) == "dashboards/provisioning"
    assert repo_path_of(grafana, "/otel-correlate/dashboards/json") == "dashboards/json"


def test_demo_services_run_only_under_the_demo_profile() -> None:
    profiles = {
        name: service.get("profiles") for name, service in services().items() if "profiles" in service
    }
    assert profiles == {name: ["demo"] for name in DEMO_SERVICES}
    for name in set(services()) - DEMO_SERVICES:
        depends_on = services()[name].get("depends_on", [])
        assert not DEMO_SERVICES & set(depends_on), f"{name} must start without the demo profile"


def test_demo_services_export_to_the_collector_and_call_each_other_by_service_name() -> None:
    for name in ("orders", "notifications"):
        env = services()[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        assert env["NOTIFICATIONS_URL"] == "http://notifications:8002"
    # The stub binds 127.0.0.1 only, so it shares the notifications container's network.
    assert services()["telegram-stub"]["network_mode"] == "service:notifications"
    assert (
        services()["notifications"]["environment"]["OTEL_CORRELATE_TELEGRAM_API_URL"]
        == "http://127.0.0.1:8765"
    )


def test_engines_mount_the_config_files_the_native_launcher_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    configs = {}
    for name in COMPOSE_CONFIGS:
        service = services()[name]
        configs[name] = repo_path_of(service, config_flag_value(service["command"]))
    assert configs == COMPOSE_CONFIGS

    engines = {engine.name: engine for engine in _stack.ENGINES}
    native = {
        name: engines[NATIVE_NAMES[name]].config_source().resolve().relative_to(ROOT).as_posix()
        for name in NATIVE_CONFIGS
    }
    assert native == NATIVE_CONFIGS
    # Alertmanager's compose config is the native one but for the Telegram token (generated, never edited).
    assert (ROOT / COMPOSE_CONFIGS["alertmanager"]).read_text() == compose_alertmanager.render(
        (ROOT / NATIVE_CONFIGS["alertmanager"]).read_text()
    ), "stack/alertmanager/alertmanager.yml changed: run `python scripts/compose_alertmanager.py`"


def test_native_engines_start_with_their_config_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_stack, "_system_binary", lambda name: name)
    binaries = {name: Path(name) for name in ("tempo", "loki", "otelcol-correlate")}
    for engine in _stack.ENGINES:
        used = Path(config_flag_value(engine.argv(tmp_path, binaries)))
        if engine.name == "alertmanager":  # a rendered copy, with the Telegram token filled in
            assert used == tmp_path / "alertmanager" / "alertmanager.yml"
        elif engine.name == "prometheus":  # a rendered copy, with target ports offset
            assert used == tmp_path / "prometheus-config" / "prometheus.yml"
        else:
            assert used == engine.config_source()


def test_engines_get_the_native_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stack, "_system_binary", lambda name: name)
    binaries = {name: Path(name) for name in ("tempo", "loki", "otelcol-correlate")}
    engines = {engine.name: engine for engine in _stack.ENGINES}
    path_or_address = re.compile(
        r"^--?(config(\.file)?|storage\.([a-z]+\.)?path|web\.listen-address|log\.level)="
    )
    for name, native_name in NATIVE_NAMES.items():
        native_argv = engines[native_name].argv(Path("/state"), binaries)[1:]
        native_flags = {arg for arg in native_argv if not path_or_address.match(arg)}
        assert native_flags <= set(services()[name]["command"]), name


def _loopback_defaults(config: str) -> dict[str, str]:
    """``{VAR: default}`` of every ``${VAR:-default}``/``${env:VAR:-default}`` whose default is loopback."""
    found = re.findall(r"\$\{(?:env:)?([A-Z0-9_]+):-([^}]*)\}", (ROOT / config).read_text())
    return {name: default for name, default in found if "127.0.0.1" in default or "localhost" in default}


def test_compose_points_every_loopback_default_at_a_compose_service() -> None:
    # In-container loopback on purpose: pprof stays private to the collector's container.
    stays_loopback = {"OTEL_CORRELATE_PPROF_ENDPOINT"}
    left_on_loopback = {}
    hosts = {}
    for name in ("otel-collector", "tempo", "loki"):
        env = services()[name]["environment"]
        for variable in _loopback_defaults(NATIVE_CONFIGS[name]):
            if variable in stays_loopback:
                continue
            value = env.get(variable)
            if value is None or "127.0.0.1" in value or "localhost" in value:
                left_on_loopback[f"{name}.{variable}"] = value
                continue
            host = re.sub(r"^[a-z]+://", "", value).split("/")[0].split(":")[0]
            hosts[f"{name}.{variable}"] = host
    assert left_on_loopback == {}
    unknown = {key: host for key, host in hosts.items() if host != "0.0.0.0" and host not in services()}
    assert unknown == {}
    assert {key for key, host in hosts.items() if host == "0.0.0.0"} == {
        "otel-collector.OTEL_CORRELATE_BIND",
        "otel-collector.OTEL_CORRELATE_TELEMETRY_HOST",
        "tempo.OTEL_CORRELATE_TEMPO_HOST",
        "loki.OTEL_CORRELATE_LOKI_HOST",
    }


def test_loki_and_tempo_expand_environment_variables_in_their_configs() -> None:
    for name in ("loki", "tempo"):
        assert "-config.expand-env=true" in services()[name]["command"]


def test_compose_prometheus_targets_are_the_native_ones_on_service_hostnames() -> None:
    def targets(folder: Path) -> dict[str, list[str]]:
        return {
            path.stem: [target for group in yaml.safe_load(path.read_text()) for target in group["targets"]]
            for path in sorted(folder.glob("*.yml"))
        }

    native = targets(ROOT / "stack" / "prometheus" / "targets")
    ours = targets(ROOT / "stack" / "compose" / "prometheus" / "targets")
    assert ours == {
        job: [f"{job}:{target.rsplit(':', 1)[1]}" for target in addresses]
        for job, addresses in native.items()
    }
    assert set(ours) <= set(services()), "each target file is named after the compose service it scrapes"
