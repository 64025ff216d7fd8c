"""Running guarded statements on SQLite in worker processes (`sqlite_worker`): a worker is reused while its queries
end in time, killed at the deadline (the tool answers then, without waiting for it), and replaced on the next query.
At most `max_concurrent_queries` workers exist, since the server's gate lets no more queries in. Never imports `host`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from servers.database.limits import Limits
from servers.database.results import QueryResult
from servers.database.rows import QueryError

log = logging.getLogger("servers.database")

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds `servers`
GRACE_SECONDS = 0.5  # past the deadline, for the worker's own progress handler to answer before it is killed


class WorkerFailed(Exception):
    """The worker ended or answered something unreadable; the message says what to tell the caller."""


class Worker:
    """One worker process and the end of its pipes."""

    def __init__(self, process: Process, answer_limit: int) -> None:
        self.process = process
        assert process.stdout is not None and process.stdin is not None
        self.output = BufferedByteReceiveStream(process.stdout)
        self.answer_limit = answer_limit

    async def ask(self, sql: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            await self.process.stdin.send(json.dumps({"sql": sql}).encode() + b"\n")
            line = await self.output.receive_until(b"\n", self.answer_limit)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError):
            with anyio.move_on_after(1):
                await self.process.wait()  # for its exit status
            raise WorkerFailed(f"the query's worker process ended ({self._ending()})") from None
        except anyio.DelimiterNotFound:
            raise WorkerFailed("the query's worker sent an answer larger than the result limit") from None
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _ending(self) -> str:
        code = self.process.returncode
        if code is None or code >= 0:
            return f"exit status {code}" if code is not None else "it closed its output"
        return f"killed by signal {-code}, perhaps for using too much memory"

    async def kill(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.aclose()


class SqliteWorkers:
    """The pool of worker processes for one SQLite database (`target`, as `sqlite3.connect` opens it)."""

    def __init__(self, target: str, limits: Limits) -> None:
        self.target = target
        self.limits = limits
        self.idle: list[Worker] = []

    async def query(self, sql: str) -> QueryResult:
        """Run one statement the guard let through; at the deadline the worker is killed and QueryError raised."""
        limits = self.limits
        worker: Worker | None = None
        answer: dict[str, Any] | None = None
        try:
            with anyio.fail_after(limits.statement_timeout + GRACE_SECONDS):
                worker = self.idle.pop() if self.idle else await self._start()
                answer = await worker.ask(sql)
        except TimeoutError:
            seconds = limits.statement_timeout
            raise QueryError(f"the query ran past its {seconds:g} s deadline and was stopped") from None
        except WorkerFailed as error:
            raise QueryError(str(error)) from None
        finally:
            if worker is not None and (answer is None or answer.get("fatal")):
                await worker.kill()  # late, failed, cancelled or out of memory: never reused
        assert worker is not None and answer is not None  # the try block set both or raised
        if not answer.get("fatal"):
            self.idle.append(worker)
        if "error" in answer:
            raise QueryError(answer["error"])
        rows: list[list[Any]] = answer["rows"]
        note = answer["note"]
        return QueryResult(columns=answer["columns"], rows=rows, row_count=len(rows), truncated=note is not None,
                           note=note)  # fmt: skip

    async def _start(self) -> Worker:
        config = {"target": self.target, "limits": dataclasses.asdict(self.limits), "parent": os.getpid()}
        # the worker imports `servers` from where this server did, whatever the working directory or install
        search_path = os.pathsep.join(filter(None, (PACKAGE_ROOT, os.environ.get("PYTHONPATH"))))
        process = await anyio.open_process(
            [sys.executable, "-m", "servers.database.sqlite_worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the server's stderr: a worker's traceback belongs in the server's log
            env={**os.environ, "PYTHONPATH": search_path},
        )
        # the answer: rows within the byte budget, column names (from the query text) and a note
        answer_limit = self.limits.max_result_bytes + 8 * self.limits.max_query_length + 64 * 1024
        return Worker(process, answer_limit)

    async def aclose(self) -> None:
        workers, self.idle = self.idle, []
        for worker in workers:
            await worker.kill()
