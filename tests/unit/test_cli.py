"""The command line (every option says what it does) and the demos' scale."""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

import pytest

from stagewidget.__main__ import build_parser, main
from stagewidget.demo import SCALE_VARIABLE, demo_scale
from stagewidget.errors import ConfigError


def parsers(parser: argparse.ArgumentParser, name: str = "python -m stagewidget"):
    """``parser`` and every subcommand's parser below it, with their command names."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from parsers(sub, f"{name} {command}")


def test_every_command_line_option_has_help() -> None:
    missing = []
    for name, parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{name} {choice.dest}" for choice in action._choices_actions
                            if not choice.help]
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_every_option_with_a_default_names_it() -> None:
    silent = []
    for name, parser in parsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            if action.default not in (None, False, []) and "default" not in (action.help or ""):
                silent.append(f"{name} {action.option_strings[0]} (default {action.default!r})")
    assert silent == []


def test_the_scale_defaults_to_one_and_reads_the_variable() -> None:
    assert demo_scale({}) == 1.0
    assert demo_scale({SCALE_VARIABLE: " 0.25 "}) == 0.25


@pytest.mark.parametrize("text", ["fast", "0", "-1", "nan", "inf"])
def test_a_bad_scale_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match=rf"STAGEWIDGET_NOTEBOOK_SCALE must be a number > 0.*"
                                          rf"\(got '{text}'\)"):
        demo_scale({SCALE_VARIABLE: text})


def test_the_terminal_demo_writes_its_model(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--rows", "500", "--epochs", "2"]) == 0
    model = json.loads((tmp_path / "model.json").read_text())
    assert len(model["weights"]) == 8 and 0.5 < model["accuracy"] <= 1
    assert f"model written to {tmp_path / 'model.json'}" in capsys.readouterr().out


def test_the_terminal_demo_refuses_a_bad_scale_before_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(SCALE_VARIABLE, "fast")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "STAGEWIDGET_NOTEBOOK_SCALE must be a number > 0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["demo", "--lab", "--rows", "5"], "--rows: for the terminal demo, not --lab"),
    (["demo", "--port", "8888"], "--port: only with --lab"),
    (["demo", "--epochs", "0"], "must be a whole number >= 1"),
])
def test_demo_options_that_do_not_go_together_are_refused(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_lab_without_the_notebook_says_where_it_looked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--lab", "--notebooks", str(tmp_path)]) == 2
    assert f"02-model-training.ipynb is not in {tmp_path}" in capsys.readouterr().err


def test_demo_lab_refuses_a_port_in_use_before_starting_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "02-model-training.ipynb").write_text("{}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--lab", "--port", str(port), "--notebooks", str(tmp_path)]) == 2
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err


def test_the_lab_demo_serves_a_working_copy_that_keeps_edits(tmp_path):
    from stagewidget.demo.lab import working_copy

    source = tmp_path / "notebooks"
    (source / ".ipynb_checkpoints").mkdir(parents=True)
    (source / "02-model-training.ipynb").write_text("original")
    (source / "train_script.py").write_text("script")
    (source / ".ipynb_checkpoints" / "x.ipynb").write_text("checkpoint")

    copy = working_copy(source)
    assert copy == tmp_path / ".demo-lab" / "notebooks"
    assert (copy / "02-model-training.ipynb").read_text() == "original"
    assert (copy / "train_script.py").read_text() == "script"
    assert not (copy / ".ipynb_checkpoints").exists()

    (copy / "02-model-training.ipynb").write_text("edited in the demo")
    (source / "03-new.ipynb").write_text("new")
    assert working_copy(source) == copy
    assert (copy / "02-model-training.ipynb").read_text() == "edited in the demo"
    assert (copy / "03-new.ipynb").read_text() == "new"
    assert (source / "02-model-training.ipynb").read_text() == "original"
