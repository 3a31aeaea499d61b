"""Where the API's CPU goes per request, from a cProfile of `ledger serve`."""

from __future__ import annotations

import pstats
from pathlib import Path
from typing import Any

PROFILE_GROUPS = (
    ("asyncpg (SQL: protocol, codecs)", ("asyncpg/",)),
    ("aiokafka + producer library (recording the read)", ("aiokafka/", "producers/", "kafka/")),
    ("json encoding", ("json/",)),
    ("aiohttp (HTTP parsing, routing, writing)", ("aiohttp/", "multidict/", "yarl/")),
    ("ledger.http + ledger.pg + auth (handlers, rows -> entries)", ("ledger/",)),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
)
PROFILE_FUNCTIONS = (
    ("history handler (snapshot, SQL, entries, JSON)", "history.py", "_history"),
    ("auth (token lookup, cached 30 s)", "app.py", "_authenticate"),
    ("record the read (AuditLogUsed emit)", "readaudit.py", "record"),
    ("reader.snapshot (signed sizes)", "reader.py", "snapshot"),
    ("reader.history (SQL + rows -> entries)", "reader.py", "history"),
    ("entry_json (entries -> dicts)", "common.py", "entry_json"),
    ("json_response (dumps + Response)", "web_response.py", "json_response"),
)


def print_profile(path: Path, requests: int) -> None:
    stats = pstats.Stats(str(path))
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table.values())
    # Waiting for the network: the selector's poll (a builtin, file "~").
    idle = sum(v[2] for k, v in table.items() if k[0] == "~" and "poll" in k[2])
    busy = total - idle
    print(f"cProfile of the API process: {busy:.1f} s on CPU for {requests:,} history "
          f"requests ({busy / requests * 1e6:,.0f} µs each under the profiler)")  # fmt: skip
    print("  by package (own time):")
    seen = 0.0
    for label, parts in PROFILE_GROUPS:
        own = sum(v[2] for k, v in table.items() if any(part in k[0] for part in parts))
        seen += own
        print(f"    {label:<58} {own / busy:6.1%}")
    print(f"    {'other (builtins: socket writes, uuid, datetime, ...)':<58} "
          f"{(busy - seen) / busy:6.1%}")  # fmt: skip
    print("  top functions by own time:")
    top = sorted(
        ((v[2], k) for k, v in table.items() if not (k[0] == "~" and "poll" in k[2])),
        reverse=True,
    )[:10]
    for own, (filename, line, function) in top:
        where = "/".join(Path(filename).parts[-2:]) if filename != "~" else ""
        print(f"    {own / busy:6.1%}  {function} {where}:{line}" if where else
              f"    {own / busy:6.1%}  {function}")  # fmt: skip
    print("  by step (cumulative, while on CPU):")
    for label, filename, function in PROFILE_FUNCTIONS:
        cum = sum(v[3] for k, v in table.items() if k[0].endswith(filename) and k[2] == function)
        print(f"    {label:<58} {cum / busy:6.1%}  {cum / requests * 1e6:7,.0f} µs/request")
