"""What ``infusion-monitor up`` prints once its services listen: every address it serves, where
the secrets are (paths only, never a secret), how to sign in to the board, how to publish. Pure:
the text from what ``up`` found out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..runtime import listening

LABELS = {  # listener -> (label, what it is for, the setting of its address)
    listening.BOARD: ("board", "the nurses' live view", "INFUSION_MONITOR_BOARD_BIND"),
    listening.PAGER_ACK: ("pager ack", "POST acknowledgements with a caller's token", "INFUSION_MONITOR_PAGER_ACK_BIND"),
    listening.GATEWAY_MLLP: ("gateway MLLP", "HL7 v2 feeds", "INFUSION_MONITOR_MLLP_PORT"),
    listening.GATEWAY_FHIR: ("gateway FHIR", "FHIR R4 resources and Bundles", "INFUSION_MONITOR_HTTP_PORT"),
}


@dataclass(frozen=True)
class UpBanner:
    nats_url: str
    command: str  # how the reader runs a command here: "python3 run.py" or "infusion-monitor"
    data_dir_option: str = ""  # " --data-dir DIR" when the data dir is not the default one
    port_note: str | None = None  # "4222 was taken"
    credentials: Path | None = None  # the embedded server's credentials directory
    expected: tuple[str, ...] = ()  # listeners up started
    listeners: dict[str, str] = field(default_factory=dict)  # listener -> address, as announced
    board_users: Path | None = None
    board_user_count: int = 0
    secrets: tuple[tuple[str, Path], ...] = ()  # (what, path) of other secret files
    gateway_off: bool = False
    producer_example: str | None = None  # the command that runs examples/producer.py
    users_option: str = ""  # " --users FILE" when $INFUSION_MONITOR_BOARD_USERS names the board's file


def render(b: UpBanner) -> str:
    lines = ["infusion-monitor is up.", ""]
    note = f"  ({b.port_note}: this port instead)" if b.port_note else ""
    lines.append(f"  {'NATS':<14} {b.nats_url}{note}")
    for listener in b.expected:
        label, about, setting = LABELS[listener]
        address = b.listeners.get(listener)
        if address:
            lines.append(f"  {label:<14} {address}  ({about})")
        else:
            lines.append(f"  {label:<14} not listening yet: see the log above; is its address taken? ({setting})")
    if b.gateway_off:
        lines.append(f"  {'gateway':<14} not running: set INFUSION_MONITOR_PATIENT_KEY_SECRET to run it")
    lines.append("")
    if listening.BOARD in b.expected and b.board_users is not None:
        add = f"{b.command} board add-user NAME{b.users_option or b.data_dir_option}"
        if b.board_user_count:
            lines.append(f"Board sign-in: a user of {b.board_users} ({b.board_user_count}); add one with: {add}")
        else:
            lines.append(f"Board sign-in: no user yet. Add one (it asks for a password): {add}")
    if b.credentials is not None:
        lines.append(f"NATS credentials: {b.credentials}/<user>.creds (mode 0600; producer.creds for producers, "
                     "operator.creds for the command-line tools)")
    for what, path in b.secrets:
        lines.append(f"{what}: {path}")
    lines.append("")
    lines.append("Producers publish inbound events on im.in.<patient>.<type> (user producer); alerts arrive on "
                 "im.alert.>.")
    if b.producer_example:
        lines.append(f"Try it: {b.producer_example}   then: {b.command} alerts{b.data_dir_option}")
    lines.append("Ctrl-C stops everything up started.")
    return "\n".join(lines) + "\n"
