"""TLS for the product's own listeners (the board, the pager's endpoint, the gateway's MLLP and
FHIR ports): a certificate and key, and optionally a CA whose client certificates are required
(mutual TLS). Standard library only."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerTls:
    cert: str
    key: str
    client_ca: str | None = None  # set: every client must present a certificate signed by it

    @classmethod
    def from_env(cls, env: dict[str, str], prefix: str) -> ServerTls | None:
        """``<prefix>_TLS_CERT``, ``<prefix>_TLS_KEY``, ``<prefix>_TLS_CLIENT_CA``; none: plain."""
        cert, key = env.get(f"{prefix}_TLS_CERT"), env.get(f"{prefix}_TLS_KEY")
        if not cert and not key:
            return None
        if not (cert and key):
            raise ValueError(f"{prefix}_TLS_CERT and {prefix}_TLS_KEY go together")
        return cls(cert, key, env.get(f"{prefix}_TLS_CLIENT_CA") or None)

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca:
            context.load_verify_locations(self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def uvicorn_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"ssl_certfile": self.cert, "ssl_keyfile": self.key}
        if self.client_ca:
            options.update(ssl_ca_certs=self.client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
        return options


def peer_names(ssl_object: Any) -> set[str]:
    """The verified client certificate's common name and DNS/IP subject alternative names."""
    if ssl_object is None:
        return set()
    cert = ssl_object.getpeercert() or {}
    names = {value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}
    names |= {value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")}
    return names
