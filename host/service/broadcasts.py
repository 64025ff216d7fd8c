"""Broadcasts, between the front ends and storage: what text may be broadcast, the rows (host.storage.broadcasts)
under this process's owner id, and the doorbell that wakes this process's sender when a broadcast is created here
(other processes' broadcasts are found by the sender's slow poll). Front ends format the values; the Telegram
front end sends (host.telegram.broadcast)."""

from dataclasses import dataclass

import anyio
import structlog

from host.errors import StorageError
from host.storage import ConversationStore
from host.storage.broadcasts import LEASE, Claimed, Outcome, Progress

log = structlog.get_logger("host.service")

MAX_CHARS = 4096  # Telegram's limit for one message, in UTF-16 code units
RENEW_SECONDS = LEASE.total_seconds() / 3


@dataclass(frozen=True, slots=True)
class Started:
    """A broadcast created: its id and how many users it goes to."""

    id: int
    recipients: int


@dataclass(frozen=True, slots=True)
class BroadcastRefused:
    """Why a text cannot be broadcast; nothing was created."""

    reason: str


class Broadcasting:
    """One process's broadcasts: created by its admins or the operator, claimed and sent by its sender."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self._created = anyio.Event()

    async def start(self, text: str, by: int | None) -> Started | BroadcastRefused:
        """A broadcast of `text` by an admin (None: the operator) to every reachable, unblocked user."""
        text = text.strip().replace("\x00", "\ufffd")  # PostgreSQL's text cannot hold NUL
        if not text:
            return BroadcastRefused("the text to broadcast is empty")
        length = len(text.encode("utf-16-le")) // 2
        if length > MAX_CHARS:
            return BroadcastRefused(f"the text is {length} characters long; Telegram allows {MAX_CHARS}")
        broadcast_id, recipients = await self.store.broadcasts.create(text, by)
        self._created.set()
        return Started(broadcast_id, recipients)

    async def progress(self, broadcast_id: int) -> Progress | None:
        return await self.store.broadcasts.progress(broadcast_id)

    async def created(self, seconds: float) -> None:
        """Return when a broadcast was created in this process since the last return, or after `seconds`."""
        with anyio.move_on_after(seconds):
            await self._created.wait()
        self._created = anyio.Event()

    async def claim(self, *, alone: bool) -> Claimed | None:
        """A broadcast for this process to send now (see Broadcasts.claim), or None."""
        return await self.store.broadcasts.claim(self.store.owner, alone=alone)

    async def hold(self, broadcast_id: int) -> None:
        """Renew this process's lease on the broadcast every third of it; return when another process took it over
        (then stop sending it). A renewal the database does not answer is logged and tried again at the next."""
        while True:
            await anyio.sleep(RENEW_SECONDS)
            try:
                if not await self.store.broadcasts.renew(broadcast_id, self.store.owner):
                    return
            except StorageError as error:
                log.warning("broadcast_lease_not_renewed", broadcast=broadcast_id, error=str(error))

    async def pending(self, broadcast_id: int, limit: int) -> list[int]:
        return await self.store.broadcasts.pending(broadcast_id, limit)

    async def mark(self, broadcast_id: int, user_id: int, outcome: Outcome) -> bool:
        """Record one recipient's outcome; False when this process no longer holds the broadcast."""
        return await self.store.broadcasts.mark(broadcast_id, user_id, outcome, self.store.owner)

    async def finish(self, broadcast_id: int) -> Progress | None:
        """The broadcast done, with its audit entry; its counts, or None when it was not this process's to finish."""
        return await self.store.broadcasts.finish(broadcast_id, self.store.owner)
