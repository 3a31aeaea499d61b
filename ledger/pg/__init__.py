"""PostgreSQL adapters of the ledger's ports (asyncpg).

Invariant: all SQL lives in ``ledger.pg.sql`` as named, parameterised constants;
these adapters hold no state beyond their connection pool.
"""
