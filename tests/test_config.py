"""Config loading: search order, env substitution, and one-line errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harvester.config import parse_config, parse_duration
from harvester.config.loader import find_config_path, load_config
from harvester.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """
sources:
  - type: synthetic
    name: demo
    rate: 5
rules:
  - name: acme
    keywords: [acme air]
alerts:
  sinks:
    - type: log
"""


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", env or {})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_minimal_config_parses() -> None:
    loaded = parse_config(MINIMAL, "test.yaml", {})
    cfg = loaded.config
    assert [s.instance_name for s in cfg.sources] == ["demo"]
    assert type(cfg.sources[0]).__name__ == "SyntheticConfig"
    assert cfg.rules[0].keywords == ["acme air"]
    assert cfg.alerts.sinks[0].instance_name == "log"


def test_unknown_key_names_its_path_and_line() -> None:
    message = error_of(MINIMAL.replace("rate: 5", "rate: 5\n    rat: 6"))
    assert message == "config error: sources[0].rat: unknown key (test.yaml line 6)"


def test_wrong_type_names_the_key_and_value() -> None:
    message = error_of(MINIMAL.replace("rate: 5", "rate: fast"))
    assert message.startswith("config error: sources[0].rate: ")
    assert "'fast'" in message and "line 5" in message


def test_unknown_top_level_key() -> None:
    assert error_of("sourcez: []\n").startswith("config error: sourcez: unknown key")


def test_unknown_plugin_type_lists_the_known_ones() -> None:
    message = error_of("sources:\n  - type: myspace\n")
    assert "sources[0].type: unknown source type 'myspace'" in message
    assert "synthetic" in message


def test_broken_yaml_gives_the_line() -> None:
    message = error_of("sources:\n  - type: synthetic\n    rate: [1, 2\n")
    assert message.startswith("config error: invalid YAML")
    assert "test.yaml line" in message


def test_env_substitution_with_default_and_missing() -> None:
    text = MINIMAL.replace("rate: 5", "rate: ${RATE:-7}")
    assert parse_config(text, "t.yaml", {}).config.sources[0].rate == 7  # type: ignore[attr-defined]
    assert parse_config(text, "t.yaml", {"RATE": "9"}).config.sources[0].rate == 9  # type: ignore[attr-defined]
    message = error_of(MINIMAL.replace("rate: 5", "rate: ${RATE}"))
    assert message.startswith("config error: sources[0].rate: environment variable RATE is not set")


def test_env_values_are_never_echoed_in_errors() -> None:
    message = error_of(MINIMAL.replace("rate: 5", "rate: ${RATE}"), {"RATE": "s3cr3t-value"})
    assert "s3cr3t-value" not in message
    assert message.startswith("config error: sources[0].rate:")


def test_rule_validation_messages() -> None:
    assert "a rule needs keywords" in error_of("rules:\n  - name: empty\n")
    assert "expected a cashtag" in error_of("rules:\n  - name: t\n    cashtags: ['$$$']\n")
    assert "invalid regular expression" in error_of("rules:\n  - name: t\n    regex: ['(']\n")
    assert "used twice" in error_of("rules:\n  - {name: a, keywords: [x]}\n  - {name: a, keywords: [y]}\n")


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    assert parse_duration(12) == 12.0
    for bad in ("soon", "5 parsecs", -1, True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert "expected a duration" in error_of("stats_interval: soon\n")


def test_rules_file_is_merged(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("rules:\n  - name: extra\n    cashtags: [$btc]\n")
    (tmp_path / "h.yaml").write_text(MINIMAL + "rules_file: rules.yaml\n")
    cfg = load_config(tmp_path / "h.yaml", env={}).config
    assert [r.name for r in cfg.rules] == ["acme", "extra"]
    assert cfg.rules[1].cashtags == ["BTC"]


def test_error_in_rules_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("- name: ok\n  keywords: [a]\n- name: bad\n  keywordz: [b]\n")
    (tmp_path / "h.yaml").write_text("rules_file: rules.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "h.yaml", env={})
    assert "rules[1].keywordz: unknown key" in str(info.value)
    assert "rules.yaml line 4" in str(info.value)


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_path("x.yaml", {"HARVESTER_CONFIG": "y.yaml"}) == Path("x.yaml")
    assert find_config_path(None, {"HARVESTER_CONFIG": "y.yaml"}) == Path("y.yaml")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "harvester.yaml").write_text("{}\n")
    assert find_config_path(None, {}) == Path("config/harvester.yaml")


def test_shipped_config_is_valid() -> None:
    loaded = load_config(REPO / "config" / "harvester.yaml", env={})
    assert loaded.config.sources and loaded.config.rules and loaded.config.alerts.sinks


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("sources:\n  - type: synthetic\n    rate: fast\n", "sources[0].rate"),
        ("sources:\n  - type: synthetic\n    speed: 3\n", "sources[0].speed: unknown key"),
        ("state_dir: ${NOPE_NOT_SET}\n", "environment variable NOPE_NOT_SET is not set"),
        ("sources: [\n", "invalid YAML"),
    ],
)
def test_check_config_exits_78_with_one_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "harvester", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert expected in lines[0]


def test_check_config_prints_summary() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harvester",
            "check-config",
            "--config",
            str(REPO / "config" / "harvester.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "sources (1)" in done.stdout and "rules (" in done.stdout and "sinks (1)" in done.stdout


def test_secret_fields_are_collected_for_redaction_and_never_echoed() -> None:
    from typing import Literal

    from pydantic import SecretStr

    from harvester.config.schema import SourceConfig
    from harvester.plugins import SOURCES

    class TokenConfig(SourceConfig):
        type: Literal["tokened"] = "tokened"
        token: SecretStr
        rate: int = 1

    SOURCES.register("tokened", TokenConfig, lambda cfg: None)
    try:
        text = "sources:\n  - type: tokened\n    token: ${TOKEN}\n"
        loaded = parse_config(text, "t.yaml", {"TOKEN": "tok-9f8e7d"})
        assert "tok-9f8e7d" in loaded.secrets
        assert "tok-9f8e7d" not in repr(loaded.config)
        message = error_of(text + "    rate: ${TOKEN}\n", {"TOKEN": "tok-9f8e7d"})
        assert "tok-9f8e7d" not in message and message.startswith("config error: sources[0].rate:")
    finally:
        SOURCES.unregister("tokened")


def test_run_refuses_a_bad_config_before_starting(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\nsources:\n  - type: synthetic\n    rate: -5\n")
    done = subprocess.run(
        [sys.executable, "-m", "harvester", "run", "--config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 78
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("config error: sources[0].rate: Input should be greater than 0")
    assert not (tmp_path / "state").exists()  # nothing was started or created


def test_a_broken_lexicon_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    lexicon = tmp_path / "words.tsv"
    lexicon.write_text("word\tscore\twhy\nmoon\tnot-a-number\tbecause\n")
    message = error_of(f"engine:\n  lexicon_file: {lexicon}\n")
    assert message.startswith("config error: engine.lexicon_file:")
    assert "words.tsv" in message


def test_rules_a_platform_source_cannot_stream_stop_start_up_with_one_line() -> None:
    # X refuses stream rules over the account's length limit; the twitter source derives its rules
    # from `rules:`, so only the loader, with both in hand, can say so before anything starts.
    text = """
sources:
  - type: twitter
    bearer_tokens: ["${X_TOKEN}"]
    max_rule_length: 40
rules:
  - name: acme
    keywords: [acme air, acme airlines, acme air flights, acme air delays]
"""
    message = error_of(text, {"X_TOKEN": "sekrit-token-value"})
    assert message.startswith("config error: ")
    assert "'acme'" in message and "max_rule_length" in message
    assert "sekrit-token-value" not in message
    parse_config(text.replace("max_rule_length: 40", "max_rule_length: 1024"), "t.yaml", {"X_TOKEN": "x"})
