"""The async lifecycle every long-running part shares: ``start()``, an idempotent
``stop()``, and ``async with`` around both.

Invariant: ``async with`` starts the part on entry and stops it on exit, whatever ended
the block; a subclass does no I/O in ``__init__`` and makes ``stop()`` safe to call twice
and before ``start()``. (The ledger's adapters keep their own copy in
``ledger.pg.pool.PooledAdapter``: the ledger may not import the producer library.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class AsyncLifecycle(ABC):
    """``start()``/``stop()`` with ``async with``."""

    __slots__ = ()

    @abstractmethod
    async def start(self) -> None:
        """Acquire the part's resources (connections, files, tasks)."""

    @abstractmethod
    async def stop(self) -> None:
        """Release them; idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
