"""The top-level ``faceflow`` command: global flags work before and after any subcommand."""

from __future__ import annotations

import argparse

import pytest

from faceflow.cli import build_parser, main


@pytest.mark.parametrize(
    ("argv", "level", "debug"),
    [
        (["dev", "status"], "WARNING", False),
        (["--log-level", "info", "dev", "status"], "INFO", False),
        (["dev", "status", "--log-level", "DEBUG", "--debug"], "DEBUG", True),
        (["--log-level", "INFO", "dev", "--log-level", "ERROR", "status"], "ERROR", False),
        (["--debug", "models", "build"], "WARNING", True),
        (["identities", "list", "--log-level", "critical"], "CRITICAL", False),
    ],
)
def test_global_flags_anywhere(
    argv: list[str], level: str, debug: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FACEFLOW_LOG_LEVEL", raising=False)
    args = build_parser().parse_args(argv)
    assert (args.log_level, args.debug) == (level, debug)


def test_every_leaf_subcommand_accepts_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACEFLOW_LOG_LEVEL", raising=False)
    parser = build_parser()
    leaves: list[tuple[list[str], argparse.ArgumentParser]] = []

    def walk(p: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            leaves.append((path, p))
        for action in subs:
            for name, child in action.choices.items():
                walk(child, [*path, name])

    walk(parser, [])
    assert len(leaves) > 10
    for path, leaf in leaves:
        option_strings = {s for a in leaf._actions for s in a.option_strings}
        assert {"--log-level", "--debug"} <= option_strings, path


def test_bad_log_level_is_a_usage_error_not_a_trace(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FACEFLOW_LOG_LEVEL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["dev", "status", "--log-level", "loud"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'loud'" in err
    assert "Traceback" not in err


def test_bad_log_level_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEFLOW_LOG_LEVEL", "verbose")
    with pytest.raises(SystemExit) as exit_info:
        main(["dev", "status"])
    assert exit_info.value.code == 2
    assert "got 'verbose'" in capsys.readouterr().err
