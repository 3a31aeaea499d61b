"""Kafka consumers that append audit events to the ledger exactly once.

Invariant: consumers use only the ledger's public ingestion API and the
producers' codec; the ledger's position in each partition lives in PostgreSQL.
"""
