"""Find, read, substitute and validate the configuration; turn every mistake into one line.

The order of search: `--config FILE`, `$HARVESTER_CONFIG`, `./config/harvester.yaml`,
`/etc/harvester/harvester.yaml`. `${VAR}` and `${VAR:-default}` in string values are replaced from the
environment after parsing (so an environment value can never change the YAML's structure).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from harvester.config.schema import Config, PluginConfig, RuleConfig
from harvester.errors import ConfigError
from harvester.registry import Registry

SEARCH_PATH = (Path("config/harvester.yaml"), Path("/etc/harvester/harvester.yaml"))
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path | None
    secrets: frozenset[str] = field(default_factory=frozenset)


def find_config_path(explicit: str | Path | None, env: Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit)
    if env.get("HARVESTER_CONFIG"):
        return Path(env["HARVESTER_CONFIG"])
    for candidate in SEARCH_PATH:
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(p) for p in SEARCH_PATH)
    raise ConfigError(
        "", f"no configuration file found (give --config FILE or set HARVESTER_CONFIG; searched {searched})"
    )


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _YamlDocument:
    """Parsed YAML plus a map from key path to line number, for error messages."""

    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            where = f"{filename} line {mark.line + 1}" if mark is not None else filename
            raise ConfigError("", f"invalid YAML: {problem}", where) from None
        self.lines: dict[KeyPath, int] = {}
        if node is not None:
            self._index(node, ())

    def _index(self, node: yaml.Node, path: KeyPath) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                self._index(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, (*path, index))

    def location(self, path: KeyPath) -> str:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return f"{self.filename} line {self.lines[path[:end]]}"
        return self.filename


def substitute_env(
    data: Any, env: Mapping[str, str], doc: _YamlDocument, path: KeyPath = ()
) -> tuple[Any, set[KeyPath]]:
    """Replace `${VAR}` / `${VAR:-default}` in every string; return the data and the paths substituted."""
    substituted: set[KeyPath] = set()

    def walk(value: Any, at: KeyPath) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*at, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*at, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            substituted.add(at)

            def replace(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                if name in env:
                    return env[name]
                if default is not None:
                    return default
                raise ConfigError(
                    format_path(at), f"environment variable {name} is not set", doc.location(at)
                )

            return _ENV_REF.sub(replace, value)
        return value

    return walk(data, path), substituted


def _describe(error: Any, hide_input: bool) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if hide_input:
        # A value from the environment may be a secret, even in a field that is not one (the same
        # variable can feed a token); a validator's own message may quote it too.
        if isinstance(value, str) and value:
            message = message.replace(repr(value), "the value from the environment").replace(
                value, "the value from the environment"
            )
    elif isinstance(value, str | int | float | bool) and kind != "value_error":
        message += f", got {value!r}"
    return message


def _raise_first(
    exc: ValidationError, prefix: KeyPath, doc: _YamlDocument, secret_paths: set[KeyPath]
) -> None:
    error = exc.errors()[0]
    path = (*prefix, *error["loc"])
    hide = any(path[: len(p)] == p for p in secret_paths)
    raise ConfigError(format_path(path), _describe(error, hide), doc.location(path)) from None


def _validate_plugin(
    registry: Registry[Any], item: Any, path: KeyPath, doc: _YamlDocument, secret_paths: set[KeyPath]
) -> PluginConfig:
    if not isinstance(item, dict):
        raise ConfigError(
            format_path(path), f"expected a mapping with a 'type' key, got {item!r}", doc.location(path)
        )
    kind = item.get("type")
    if not isinstance(kind, str) or kind not in registry:
        known = ", ".join(registry.names())
        raise ConfigError(
            format_path((*path, "type")),
            f"unknown {registry.kind} type {kind!r} (known: {known})",
            doc.location(path),
        )
    try:
        validated = registry.get(kind).config_class.model_validate(item)
    except ValidationError as exc:
        _raise_first(exc, path, doc, secret_paths)
    assert isinstance(validated, PluginConfig)
    return validated


def _plugin_list(value: Any, path: KeyPath, doc: _YamlDocument) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(
            format_path(path), f"expected a list, got {type(value).__name__}", doc.location(path)
        )
    return value


def _load_rules_file(path: Path, env: Mapping[str, str]) -> tuple[list[RuleConfig], set[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("rules_file", f"cannot read {path}: {exc.strerror}") from None
    doc = _YamlDocument(text, str(path))
    data, _substituted = substitute_env(doc.data, env, doc)
    prefix: KeyPath = ()
    if isinstance(data, dict) and set(data) == {"rules"}:
        data, prefix = data["rules"], ("rules",)
    if not isinstance(data, list):
        raise ConfigError(
            "rules", f"{path} must hold a list of rules (or a mapping with the key 'rules')", str(path)
        )
    rules = []
    for index, item in enumerate(data):
        try:
            rules.append(RuleConfig.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = (*prefix, index, *first["loc"])
            raise ConfigError(
                format_path(("rules", index, *first["loc"])), _describe(first, False), doc.location(where)
            ) from None
    return rules, _secret_values_of(rules)


def _secret_values_of(models: Any) -> set[str]:
    """Secrets are declared by type (`SecretStr`), not guessed from key names."""
    return {secret for secret in _iter_secrets(models) if secret}


def _iter_secrets(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _iter_secrets(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _iter_secrets(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _iter_secrets(item)


def parse_config(
    text: str, filename: str, env: Mapping[str, str], base_dir: Path | None = None
) -> LoadedConfig:
    """Validate YAML text into a `Config`. Raises `ConfigError` (one line) on the first problem."""
    from harvester.plugins import SINKS, SOURCES  # imported late: plugins import this package

    doc = _YamlDocument(text, filename)
    raw = doc.data if doc.data is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "", f"the top level must be a mapping of keys, got {type(raw).__name__}", doc.location(())
        )
    data, substituted = substitute_env(raw, env, doc)

    data["sources"] = [
        _validate_plugin(SOURCES, item, ("sources", i), doc, substituted)
        for i, item in enumerate(_plugin_list(data.get("sources"), ("sources",), doc))
    ]
    alerts = data.get("alerts")
    if isinstance(alerts, dict) and "sinks" in alerts:
        alerts["sinks"] = [
            _validate_plugin(SINKS, item, ("alerts", "sinks", i), doc, substituted)
            for i, item in enumerate(_plugin_list(alerts.get("sinks"), ("alerts", "sinks"), doc))
        ]

    extra_rules: list[RuleConfig] = []
    rule_secrets: set[str] = set()
    rules_file = data.get("rules_file")
    if isinstance(rules_file, str) and rules_file:
        rules_path = Path(rules_file)
        if not rules_path.is_absolute() and base_dir is not None:
            rules_path = base_dir / rules_path
        extra_rules, rule_secrets = _load_rules_file(rules_path, env)
        data["rules_file"] = str(rules_path)

    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        _raise_first(exc, (), doc, substituted)
    if extra_rules:
        names = {r.name for r in config.rules}
        for rule in extra_rules:
            if rule.name in names:
                raise ConfigError(
                    "rules", f"the rule name {rule.name!r} is used twice; give each rule its own name"
                )
            names.add(rule.name)
        config = config.model_copy(update={"rules": [*config.rules, *extra_rules]})
    _check_platform_rules(config)
    secrets = _secret_values_of(config) | rule_secrets
    return LoadedConfig(config=config, path=None, secrets=frozenset(secrets))


def _check_platform_rules(config: Config) -> None:
    """Sources that filter at the platform (X stream rules derived from `rules:`) can only check
    their limits once both are loaded; a source config offers that check as `check_rules`."""
    for index, source in enumerate(config.sources):
        check = getattr(source, "check_rules", None)
        if check is None:
            continue
        try:
            check(config.rules)
        except ValueError as exc:
            path = getattr(exc, "path", None) or f"sources[{index}]"
            raise ConfigError(path, getattr(exc, "message", None) or str(exc)) from None


def load_config(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> LoadedConfig:
    env = os.environ if env is None else env
    path = find_config_path(explicit, env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    loaded = parse_config(text, path.name, env, base_dir=path.parent)
    return LoadedConfig(config=loaded.config, path=path, secrets=loaded.secrets)
