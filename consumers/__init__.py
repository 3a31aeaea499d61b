"""Kafka consumers that append audit events to the ledger exactly once.

Owns the ledger consumer: ``consumer`` (``LedgerConsumer``, ``ConsumerConfig``, the
rebalance listener: Kafka in, batches out to the ``Appender`` port), ``authpoll``
(producer authentication per poll), ``classify`` (one record -> ``Accepted`` or
``Rejected``), ``projection`` (an event's ``events`` index row), ``cadence`` (when to
ask for checkpoints) and ``process`` (the consumer process). Invariant: the ledger's
position in each partition lives in PostgreSQL. May import ``ledger`` (its ingestion
ports, producer authentication, the leaf format), ``producers`` (codec, events, errors,
Kafka settings, lifecycle) and ``schemas``; never ``integrations`` or ``ledgerctl``.
Import the modules themselves.
"""
