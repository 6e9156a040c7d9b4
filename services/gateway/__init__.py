"""The integration gateway (``docs/integrations.md``): HL7 v2 over MLLP and FHIR R4 in,
contract events out.

- ``mapping/``: the pure core (one module per feed) - where a mapping rule lives;
- ``identity.py``: pseudonymous patient keys (HMAC);
- ``mllp.py``, ``fhir_app.py``, ``app.py``, ``store.py``: the shell (sockets, HTTP, NATS, KV);
- ``sender.py``: ``hl7 send``; ``cli.py``: the commands.
"""
