"""Which server a command-line verb talks to (``cli/up.py`` ``resolve_nats``): ``--nats`` first; a
``--data-dir`` named on the command line wins over an exported ``NATS_URL`` (an operator who
types ``alerts --data-dir X`` must not be answered by whatever cluster the shell points at); then
``NATS_URL``; then the ``up`` of ``$INFUSION_MONITOR_DATA_DIR`` or ``./var``."""

from __future__ import annotations

from argparse import Namespace

import pytest

from infusion_monitor.cli.up import resolve_nats
from infusion_monitor.runtime.settings import Settings

EXPORTED = "nats://exported.example:4222"
ON_THE_LINE = "nats://127.0.0.1:5555"


@pytest.fixture
def up_dir(tmp_path):
    (tmp_path / "nats.url").write_text("nats://127.0.0.1:4333\n")
    return tmp_path


@pytest.mark.parametrize(("nats", "data_dir", "exported", "expected"), [
    (ON_THE_LINE, True, EXPORTED, ON_THE_LINE),             # --nats wins over everything
    (None, True, EXPORTED, "nats://127.0.0.1:4333"),        # --data-dir wins over NATS_URL
    (None, False, EXPORTED, EXPORTED),                      # no option: NATS_URL
    (None, True, None, "nats://127.0.0.1:4333"),            # the up of --data-dir
])
def test_which_server(up_dir, nats, data_dir, exported, expected):
    args = Namespace(nats=nats, data_dir=up_dir if data_dir else None)
    settings = Settings.load(env={"NATS_URL": exported} if exported else {})
    assert resolve_nats(args, settings, "operator").url == expected


def test_no_option_and_no_url_finds_the_up_of_the_default_data_dir(up_dir):
    settings = Settings.load(env={"INFUSION_MONITOR_DATA_DIR": str(up_dir)})
    assert resolve_nats(Namespace(nats=None, data_dir=None), settings, "operator").url == "nats://127.0.0.1:4333"
