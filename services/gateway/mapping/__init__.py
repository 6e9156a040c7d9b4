"""The gateway's pure core: messages in, contract events (or a rejection) out.

No I/O, no clock reads: the wall-clock time a message was received is an argument. One module
per feed (``vitals`` PCD-01, ``pump`` PCD-10, ``lab``, ``adt``, ``fhir``); ``router`` picks one.
"""
