"""The shared config loader: typed environment parsing, files, overrides, redaction."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from faceflow.errors import ConfigError
from faceflow.service.config import ConfigMixin, load_env, load_file, parse_value


class Mode(enum.StrEnum):
    FAST = "fast"
    SLOW = "slow"


@dataclass(frozen=True, kw_only=True)
class Example(ConfigMixin):
    port: int = 1
    ratio: float = 0.5
    enabled: bool = False
    name: str = "x"
    folder: Path = Path("/tmp")
    mode: Mode = Mode.FAST
    limit: int | None = field(default=5, metadata={"zero_is_none": True})
    auth_token: str = ""
    items: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.port < 0:
            raise ConfigError(f"port: expected >= 0, got {self.port}")


@pytest.mark.parametrize(
    ("raw", "kind", "expected", "error"),
    [
        ("42", int, 42, None),
        ("4x", int, None, "V: expected an integer, got '4x'"),
        ("2.5", float, 2.5, None),
        ("nan", float, None, "V: expected a finite number, got 'nan'"),
        ("abc", float, None, "V: expected a number, got 'abc'"),
        ("yes", bool, True, None),
        ("OFF", bool, False, None),
        ("maybe", bool, None, "V: expected true or false, got 'maybe'"),
        ("slow", Mode, Mode.SLOW, None),
        ("medium", Mode, None, "V: expected one of fast, slow, got 'medium'"),
        ("none", int | None, None, None),
        ("7", int | None, 7, None),
        (" text ", str, "text", None),
    ],
)
def test_parse_value(raw: str, kind: Any, expected: object, error: str | None) -> None:
    if error is None:
        assert parse_value("V", raw, kind) == expected
    else:
        with pytest.raises(ConfigError, match=error):
            parse_value("V", raw, kind)


def test_load_env_reads_prefixed_fields_by_type_and_skips_empty_and_untyped() -> None:
    env = {
        "APP_PORT": "8080",
        "APP_RATIO": "0.25",
        "APP_ENABLED": "true",
        "APP_FOLDER": "~/x",
        "APP_MODE": "slow",
        "APP_LIMIT": "0",
        "APP_NAME": "",
        "APP_ITEMS": "a b",
        "OTHER_PORT": "9",
    }
    values = load_env(Example, env, prefix="APP_")
    assert values == {
        "port": 8080,
        "ratio": 0.25,
        "enabled": True,
        "folder": Path("~/x").expanduser(),
        "mode": Mode.SLOW,
        "limit": None,
    }
    assert load_env(Example, env, prefix="APP_", skip=("port",)).get("port") is None


def test_load_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("port: 9\nmode: slow\nenabled: true\n")
    assert load_file(good, Example) == {"port": 9, "mode": Mode.SLOW, "enabled": True}
    bad = tmp_path / "bad.yaml"
    bad.write_text("prot: 9\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown settings \['prot'\]"):
        load_file(bad, Example)
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_file(tmp_path / "missing.yaml", Example)
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings, got list"):
        load_file(tmp_path / "list.yaml", Example)


def test_overrides_ignore_none_and_validate_and_describe_redacts() -> None:
    config = Example(auth_token="s3cret")
    changed = config.with_overrides(port=3, name=None)
    assert (changed.port, changed.name) == (3, "x")
    with pytest.raises(ConfigError, match="port: expected >= 0"):
        config.with_overrides(port=-1)
    described = config.describe()
    assert described["auth_token"] == "***"
    assert described["mode"] == "fast"
    assert "s3cret" not in str(described)
