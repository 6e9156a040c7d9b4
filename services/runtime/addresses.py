"""Address allow-lists: an entry is an address (``10.1.2.7``, ``::1``) or a network
(``10.1.2.0/24``); ``0.0.0.0/0`` and ``::/0`` allow any (say so on purpose)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def address_in(address: str | None, entries: Iterable[str]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:10.1.2.7 from a dual-stack socket
        ip = ip.ipv4_mapped
    for entry in entries:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def check_entries(entries: Iterable[str], what: str) -> list[str]:
    """Validate an allow-list from configuration (a typo must not silently allow nobody)."""
    out = []
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{what}: {entry!r} is not an address or network") from None
        out.append(entry)
    return out
