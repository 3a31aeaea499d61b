"""asyncpg rows the benchmarks cannot do without: a query that must return one."""

from __future__ import annotations

import asyncpg


async def one_row(conn: asyncpg.Connection, query: str, *args: object) -> asyncpg.Record:
    """``fetchrow`` for a query that always returns a row (an aggregate, an INSERT ...
    RETURNING); stops the benchmark with the query if it returned none."""
    row = await conn.fetchrow(query, *args)
    if row is None:
        raise SystemExit(f"no row from: {query}")
    return row
