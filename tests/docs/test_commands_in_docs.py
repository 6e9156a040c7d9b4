"""The commands the docs show run on a fresh clone as written (issue 17, point 7 of the stumbles):
``infusion-monitor`` is not on a newcomer's PATH and the system ``python3`` lacks the project's
packages, so the README and docs/ show ``python3 run.py <command>`` (one sentence of the README
says that after ``. .venv/bin/activate`` the same commands are ``infusion-monitor <command>``),
Python modules run with ``.venv/bin/python -m``, and every ``python3 run.py`` command shown names
a real command with real options (the CLI's own parser and the bench's)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from infusion_monitor.cli.main import _parser
from tests.docs.test_spec_and_links import FENCE, ROOT, markdown_files

CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s")
PLACEHOLDER = re.compile(r"^(<[^>]+>|[A-Z][A-Z_]*…?)$")  # `python3 run.py <command>`, `python3 run.py ARGS…`
SUBCOMMANDS = sorted(next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices)  # noqa: SLF001
BARE = re.compile(rf"(?:^|[\s(;&|`]|^\w+=\S+ )infusion-monitor ({'|'.join(SUBCOMMANDS)}|board)\b")
SYSTEM_PYTHON = re.compile(r"(?:^|[\s(;&|`])(python3?) (-m |(?!run\.py\b|deploy/make_secrets\.py\b)\S+\.py\b)")


def _user_docs() -> list[Path]:
    """What a newcomer reads: every Markdown file but the verbatim spec copies and test assets."""
    return [p for p in markdown_files() if p.relative_to(ROOT).parts[0] in ("README.md", "docs", "deploy", "examples")
            and "spec" not in p.relative_to(ROOT).parts]


def code(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every fenced or indented code line and inline code span (an
    indented block: four spaces after a blank line that does not continue a list item)."""
    out, fenced, indented, after_list = [], False, False, False
    previous = ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        elif fenced:
            out.append((number, line))
        elif line.startswith("    ") and (indented or (not previous.strip() and not after_list)):
            indented = True
            out.append((number, line.strip()))
        else:
            indented = indented and not line.strip()
            if line.strip():
                after_list = bool(LIST_ITEM.match(line)) or (after_list and line[:1].isspace())
            out += [(number, m.group(2).strip()) for m in CODE_SPAN.finditer(line)]
        previous = line
    return out


def test_the_rules_can_fail(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Run:\n\n    python -m bench\n\n- a list item\n\n    its second paragraph, `infusion-monitor up`\n\n"
                   "```sh\ninfusion-monitor demo\n```\n")
    assert code(doc) == [(3, "python -m bench"), (7, "infusion-monitor up"), (10, "infusion-monitor demo")]
    assert PLACEHOLDER.match("<command>") and PLACEHOLDER.match("ARGS…") and not PLACEHOLDER.match("up")
    assert BARE.search("infusion-monitor up --data-dir X") and BARE.search("INFUSION_MONITOR_X=1 infusion-monitor alerts")
    assert not BARE.search("services/cli/ the infusion-monitor command: up / demo")
    assert SYSTEM_PYTHON.search("python -m infusion_monitor.board hash-password")
    assert SYSTEM_PYTHON.search("python3 deploy/nats/set_passwords.py --creds-dir X")
    assert not SYSTEM_PYTHON.search(".venv/bin/python -m bench.durability_bench")
    assert not SYSTEM_PYTHON.search("python3 run.py demo") and not SYSTEM_PYTHON.search("python3 deploy/make_secrets.py")


@pytest.mark.parametrize("path", _user_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_are_shown_as_a_newcomer_runs_them(path):
    host_docs = path.relative_to(ROOT).parts[0] == "deploy"  # deployment hosts: the installed command
    bad = []
    for number, text in code(path):
        if m := SYSTEM_PYTHON.search(text):
            bad.append(f"{number}: {text!r}: the system {m.group(1)} lacks the packages (.venv/bin/python, python3 run.py)")
        if not host_docs and BARE.search(text) and ".venv/bin/activate" not in path.read_text().splitlines()[number - 1]:
            bad.append(f"{number}: {text!r}: infusion-monitor is not on a newcomer's PATH (python3 run.py ...)")
    assert not bad, f"{path.relative_to(ROOT)}:\n" + "\n".join(bad)


def test_the_readme_says_once_how_to_use_the_bare_command():
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if ".venv/bin/activate" in line]
    assert len(lines) == 1 and "infusion-monitor <command>" in lines[0], lines


def _shown_run_py_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in _user_docs():
        for number, text in code(path):
            for m in re.finditer(r"python3 run\.py ([^`#|;&)]*)", text):
                words = [w for w in shlex.split(m.group(1).replace("\\", " "), posix=True) if w != "…"]
                if words and not PLACEHOLDER.match(words[0]):
                    found.append((f"{path.relative_to(ROOT)}:{number}", words))
    return found


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}  # noqa: SLF001


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def test_every_run_py_command_shown_exists_with_its_options():
    from bench.__main__ import _parser as bench_parser

    shown = _shown_run_py_commands()
    assert len(shown) >= 30
    wrong = []
    for where, words in shown:
        first = words[0]
        if first in ("test", "screenshots"):  # pytest's arguments
            continue
        parser, rest, path = (bench_parser(), words[1:], ["bench"]) if first == "bench" else (_parser(), words, [])
        while subs := _subparsers(parser):  # down to the command itself: replay, hl7 send, deadletter list
            if not rest or rest[0] not in subs:
                wrong.append(f"{where}: {' '.join(words)!r}: {' '.join(path) or 'infusion-monitor'} has no such command")
                break
            parser = subs[rest[0]]
            path.append(rest.pop(0))
        else:
            for word in rest:
                option = word.strip("[]").split("=")[0]
                if option.startswith("--") and option not in _options(parser):
                    wrong.append(f"{where}: {' '.join(path)} has no option {option}")
    assert not wrong, "\n".join(wrong)
