"""Every ``--help`` is plain text and every option says its default (issue 17, point 9): the
test walks every command and subcommand of ``infusion-monitor`` (and ``python -m bench``)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infusion_monitor.cli.main import _parser

ROOT = Path(__file__).resolve().parents[2]
MARKUP = re.compile(r"`|\*\*|:\w+:`")  # reST literals and roles, Markdown emphasis


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its actions here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _parsers():
    from bench.__main__ import _parser as bench_parser

    return [(("infusion-monitor", *path), p) for path, p in _walk(_parser())] + \
        [(("python -m bench",), bench_parser())]


PARSERS = _parsers()


def test_every_command_is_walked():
    names = {" ".join(path) for path, _ in PARSERS}
    assert {"infusion-monitor demo", "infusion-monitor hl7 send", "infusion-monitor deadletter redrive",
            "infusion-monitor schemas export", "python -m bench"} <= names
    assert len(names) >= 15


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[" ".join(p) for p, _ in PARSERS])
def test_help_is_plain_text_and_every_option_says_its_default(path, parser):
    text = parser.format_help()
    assert not MARKUP.search(text), f"{' '.join(path)} --help has markup:\n{text}"
    formatter = parser._get_formatter()  # noqa: SLF001
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._HelpAction):  # noqa: SLF001
            continue
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for choice in action._choices_actions:  # noqa: SLF001
                assert choice.help and not MARKUP.search(choice.help), (path, choice.dest)
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{' '.join(path)}: {name} has no help"
        if action.option_strings:
            shown = formatter._get_help_string(action) % {**vars(action), "prog": parser.prog}  # noqa: SLF001
            assert "default" in shown.lower(), f"{' '.join(path)}: {name} does not say its default: {shown!r}"
            assert "None" not in shown, f"{' '.join(path)}: {name} shows a default of None: {shown!r}"


def test_the_real_command_prints_the_same_plain_help():
    out = subprocess.run([sys.executable, "-m", "infusion_monitor.cli.main", "hl7", "send", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "--now" in out and "(default: 2575)" in out and "`" not in out
