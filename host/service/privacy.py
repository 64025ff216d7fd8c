"""What the bot forgets and hands back, for every front end: /forget (every row of a user, and their chat's
folders inside DATA_DIR), /export (their conversations as two files, audited without content), and the chore that
forgets what is kept only for a while (claimed updates, refusal notices, and RETENTION_DAYS's messages and usage).
"""

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import structlog

from host.errors import StorageError
from host.mcp.registry import Registry
from host.service.export import MAX_BYTES as MAX_EXPORT_BYTES
from host.service.export import ExportFiles, export_files
from host.storage import ConversationStore

log = structlog.get_logger("host.service")

KEEP_UPDATES = timedelta(days=2)
FORGET_EVERY = 6 * 3600.0
EXPORTS_AT_ONCE = 2  # an export holds up to ~2 x MAX_EXPORT_BYTES in memory while it is built


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What /forget deleted: messages, and folders of per-chat servers."""

    messages: int
    folders: int


class Privacy:
    def __init__(
        self, store: ConversationStore, registry: Registry, *, retention_days: int = 0, data_dir: Path | None = None
    ) -> None:
        self.store = store
        self.registry = registry
        self.retention = timedelta(days=retention_days) if retention_days else None  # None: messages kept forever
        self.data_dir = data_dir  # /forget deletes a chat's folders only inside it
        self._exporting = anyio.CapacityLimiter(EXPORTS_AT_ONCE)

    async def forget(self, user_id: int) -> Forgotten:
        """Everything kept of a user: their rows (see ConversationStore.forget_user), and their private chat's own
        instances of per-chat servers stopped and the folders those were given deleted, where they lie inside
        DATA_DIR (a folder outside it, or reached through a symlink, is left alone)."""
        messages = await self.store.forget_user(user_id)
        folders = 0
        for path in await self.registry.forget_chat(user_id):
            if self._inside_data_dir(path):
                await anyio.to_thread.run_sync(shutil.rmtree, path)
                folders += 1
        log.info("user_forgotten", messages=messages, folders=folders)
        await self.store.audit.record(None, "forget", messages=messages, folders=folders)  # without whom: forgotten
        return Forgotten(messages, folders)

    def _inside_data_dir(self, path: str) -> bool:
        if self.data_dir is None or os.path.islink(path) or not os.path.isdir(path):
            return False
        return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(self.data_dir)))

    async def forget_old(self) -> None:
        """Forever, every FORGET_EVERY seconds: `forget_old_once`."""
        while True:
            await self.forget_old_once()
            await anyio.sleep(FORGET_EVERY)

    async def forget_old_once(self) -> bool:
        """Claimed update ids and refusal notices are kept for KEEP_UPDATES, long enough for any redelivery
        (Telegram keeps updates for 24 hours), short enough that Telegram's random restart of ids after a quiet week
        never meets an old one; messages, usage rows, audited tool calls and finished broadcasts for
        RETENTION_DAYS. False (and a warning) when the database failed."""
        now = datetime.now(UTC)
        try:
            forgotten = await self.store.forget_updates(now - KEEP_UPDATES)
            notices = await self.store.forget_refusal_notices((now - KEEP_UPDATES).date().isoformat())
            messages = usage = 0
            if self.retention:
                messages = await self.store.forget_messages(now - self.retention)
                usage = await self.store.usage.forget_before((now - self.retention).date().isoformat())
                await self.store.audit.forget_tool_calls_before(now - self.retention)
                await self.store.broadcasts.forget_finished_before(now - self.retention)
        except StorageError as error:
            log.warning("old_data_not_forgotten", error=str(error))
            return False
        log.info("old_data_forgotten", updates=forgotten, notices=notices, messages=messages, usage=usage)
        return True

    async def export(self, user_id: int | None, *, terminal_chat: int = 0) -> ExportFiles:
        """Everything the user may take away (host.storage.export), as a JSON and a Markdown file: their private
        chat and their messages in groups; for the operator (user None) the terminal's chat. The audit log records
        the counts and sizes, never content. At most EXPORTS_AT_ONCE are built at a time."""
        private_chat = user_id if user_id is not None else terminal_chat
        async with self._exporting:
            exported = await self.store.exports.of_user(user_id, private_chat, MAX_EXPORT_BYTES)
            now = datetime.now(UTC)
            files = await anyio.to_thread.run_sync(export_files, exported, user_id, now, MAX_EXPORT_BYTES)
        log.info("user_exported", messages=files.messages, cut=files.cut)
        await self.store.audit.record(
            user_id,
            "export",
            user_id,
            conversations=files.conversations,
            messages=files.messages,
            cut=files.cut,
            json_bytes=len(files.json),
            markdown_bytes=len(files.markdown),
        )
        return files
