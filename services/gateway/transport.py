"""Who may send what (pure): the connection a message came on against the sender it names.

A ``Peer`` is the other end of an MLLP connection: its address and, over TLS with client
certificates, the verified certificate's names. ``refusal`` says why a message must be refused
(``AR``, dead-lettered like any bad input) or ``None``:

- ``require_known_sender`` and no ``[[gateway.senders]]`` entry names MSH-3/MSH-4;
- the sender's entry lists ``peers`` and the connection's address is not among them;
- the sender's entry lists ``client_names`` and the connection presented no such certificate.

The listener has already refused connections from addresses outside ``mllp_peers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..runtime.addresses import address_in
from .config import GatewayConfig, SenderConfig


@dataclass(frozen=True)
class Peer:
    address: str
    names: frozenset[str] = field(default_factory=frozenset)


def refusal(config: GatewayConfig, sender: SenderConfig | None, peer: Peer) -> str | None:
    if sender is None:
        return "sender not configured (require_known_sender)" if config.require_known_sender else None
    if sender.peers and not address_in(peer.address, sender.peers):
        return "sender not allowed from this address"
    if sender.client_names and not peer.names & {n.strip() for n in sender.client_names}:
        return "sender not allowed without its client certificate"
    return None
