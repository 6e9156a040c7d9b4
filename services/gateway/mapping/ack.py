"""Original-mode acknowledgements: ``MSA`` echoing MSH-10, an ``ERR`` for ``AE``/``AR``."""

from __future__ import annotations

from datetime import datetime

from .common import Rejection, Translation

_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def escape(text: str) -> str:
    for plain, escaped in _ESCAPES:
        text = text.replace(plain, escaped)
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _header(raw_msh: list[str]) -> list[str]:
    return raw_msh + [""] * (13 - len(raw_msh))


def build_ack(translation: Translation, msh_fields: list[str], now: datetime) -> bytes:
    """The ACK for ``translation``. ``msh_fields``: the original MSH split on ``|`` (may be
    empty for garbage); sender and receiver are swapped in the reply."""
    msh = _header(msh_fields)
    trigger = ""
    if msh[8]:
        parts = msh[8].split("^")
        trigger = parts[1] if len(parts) > 1 else ""
    stamp = now.strftime("%Y%m%d%H%M%S") + now.strftime("%z")
    control = translation.control_id
    version = msh[11] or "2.6"
    errors = translation.errors
    segments = [
        "|".join(["MSH", "^~\\&", msh[4], msh[5], msh[2], msh[3], stamp, "",
                  f"ACK^{trigger}^ACK" if trigger else "ACK", escape(f"ACK{control}")[:199], "P", version]),
        "|".join(["MSA", translation.ack_code, escape(control)] + ([escape(errors[0].reason)] if errors else [])),
    ]
    for rej in errors:  # one ERR per refused row (ERR-2 names its segment and sequence)
        segments.append("|".join([
            "ERR", "", error_location(rej), f"{rej.error_code}^{rej.error_text}^HL70357", "E", "", "", "",
            escape(rej.reason),
        ]))
    return ("\r".join(segments) + "\r").encode()


def error_location(rej: Rejection) -> str:
    """ERR-2: segment ^ sequence ^ field ^ repetition ^ component, e.g. ``OBX^3^6^1``."""
    field_no, _, component = rej.field.partition(".")
    return "^".join([rej.segment, str(rej.segment_index) if rej.segment else "",
                     field_no if field_no.isdigit() else "", "1" if field_no.isdigit() else "",
                     component if component.isdigit() else ""]).rstrip("^")


def msh_fields(raw: bytes) -> list[str]:
    first = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r", 1)[0].decode("utf-8", "replace")
    if not first.startswith("MSH") or len(first) < 4:
        return []
    sep = first[3]
    parts = first.split(sep)
    # parts[0] = "MSH", parts[1] = MSH-2 (encoding characters): shift so index i is MSH-(i+1)
    return ["|"] + parts[1:] if sep == "|" else [sep] + parts[1:]
