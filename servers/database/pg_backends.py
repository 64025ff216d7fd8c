"""The PostgreSQL backends one database server stopped at a deadline, followed until they are gone.

A query stuck inside one function call (`strpos` over a huge string) ignores `statement_timeout`, cancel and
terminate until the call returns, holding its locks and snapshot. At the deadline the server cancels it, then
terminates it, from a second connection (`pg_cancel_backend`, `pg_terminate_backend`), drops its own connection and
answers; the backend is counted as the server's own until `pg_stat_activity` no longer lists it, and the server
refuses new queries while running plus stopped-but-alive ones would pass its cap. Never imports `host`.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import URL

log = logging.getLogger("servers.database")

SIDE_SECONDS = 5.0  # for connecting and signalling from the second connection


class StoppedBackends:
    """Backends of this server stopped at a deadline and perhaps still running."""

    def __init__(self, url: URL) -> None:
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.pids: set[int] = set()

    async def stop(self, pid: int) -> None:
        """Cancel, then terminate, backend `pid`, and count it until it is gone. Never raises: the caller answers."""
        self.pids.add(pid)
        try:
            with anyio.fail_after(SIDE_SECONDS):
                side = await asyncpg.connect(self.dsn, server_settings={"application_name": "mcpbot-database"})
                try:
                    await side.fetchval("SELECT pg_cancel_backend($1)", pid)
                    terminated = await side.fetchval("SELECT pg_terminate_backend($1)", pid)
                finally:
                    await side.close()
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("could not stop backend %d after its deadline: %s", pid, error)
            return
        log.warning("stopped backend %d at its deadline (terminated: %s); it is counted until it is gone", pid,
                    terminated)  # fmt: skip

    async def alive(self, driver: Any) -> int:
        """How many stopped backends still run, asked on `driver` (an asyncpg connection of this server)."""
        if self.pids:
            rows = await driver.fetch("SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(self.pids))
            self.pids = {row["pid"] for row in rows}
        return len(self.pids)
