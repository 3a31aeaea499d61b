"""PostgreSQL adapters of the ledger's ports (asyncpg), and the migrations.

Invariant: all SQL lives in the ``ledger.pg.sql`` package as named, parameterised
constants (one module per table group; the migrations are ``migrations/*.sql``); these
adapters hold no state beyond their connection pool. ``ledger.pg`` may import
``ledger.log``, ``ledger.audit``, ``ledger.verify`` and ``ledger.errors``, never
``ledger.http``.
"""
