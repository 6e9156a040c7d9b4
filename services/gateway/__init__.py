"""The integration gateway (``docs/integrations.md``): HL7 v2 over MLLP and FHIR R4 in,
contract events out.

- ``mapping/``: the pure core (one module per feed) - where a mapping rule lives; ``vocab.py``:
  how vendors spell MDC terms and UCUM units;
- ``config.py``: site and per-sender settings; ``identity.py``: pseudonymous patient keys (HMAC);
- ``mllp.py``, ``fhir_app.py``, ``app.py``, ``store.py``: the shell (sockets, HTTP, NATS, KV, the
  message ledger);
- ``sender.py``: ``hl7 send``; ``lint.py``: ``hl7 lint`` (the core over files, no server);
  ``cli.py``: the commands.
"""
