"""Plain-text ``--help`` for every command: each option shows its default.

``Parser`` is an ``argparse.ArgumentParser`` whose subcommand parsers are ``Parser`` too (argparse
makes them of the parent's class), all with ``DefaultsFormatter``: an option whose help does not
already say its default gets argparse's ``(default: X)``, or ``(default: off)`` for a flag. An
option whose default is ``None`` (it falls back to a variable or a computed value) must say its
default in its own words; ``tests/cli/test_help.py`` walks every command and checks this, and that
no help text carries markup (reST double backticks, Markdown emphasis).
"""

from __future__ import annotations

import argparse


class DefaultsFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text.lower() or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001 - argparse has no public name
            return f"{text} (default: off)"
        if isinstance(action, argparse._StoreFalseAction):  # noqa: SLF001
            return f"{text} (default: on)"
        if action.default is not None:
            return f"{text} (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)
