"""The audit domain: what the ledger's leaves mean, built on the pure log core.

Owns the event records decoded from leaves (``records``), what a consumer hands the
ledger (``ingest``), the query vocabulary and the reader port (``query``), API tokens and
roles (``auth``), page cursors (``cursors``), read attribution (``disclosure``,
``readlog``), producer authentication (``producerauth``), the HIPAA reports
(``reports``) and FHIR AuditEvent resources and search (``fhir``). It imports
``ledger.log`` and ``ledger.errors``; never the database, HTTP or the verifier. Ports it
needs from storage are small Protocols defined here and implemented in ``ledger.pg``.
"""
