"""The gate every request passes before the bot acts on it, for every front end: the one claim of an update (a
repeated delivery is ignored), access (the blocklist, ALLOWED_USER_IDS and ALLOWED_CHAT_IDS), empty text, the rate
limit, the daily token budgets. Admins are never refused access, budgets or limits. Values only come out; the front
end words them. Imports storage through a Protocol, the usage budgets, the rate limiter and errors.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import structlog

from host.ratelimit import RateLimiter
from host.service.usage import OverBudget, Usage

log = structlog.get_logger("host.service")


class GateStore(Protocol):
    async def claim_update(self, update_id: int) -> bool: ...
    async def is_blocked(self, user_id: int) -> bool: ...
    async def claim_refusal_notice(self, user_id: int, day: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use the bot besides admins: everyone when both sets are empty; else users in `users` (in any chat)
    and anyone in a chat in `chats` (a private chat's id is its user's id)."""

    users: frozenset[int] = field(default_factory=frozenset)
    chats: frozenset[int] = field(default_factory=frozenset)

    def allows(self, user_id: int, chat_id: int) -> bool:
        return (not self.users and not self.chats) or user_id in self.users or chat_id in self.chats


@dataclass(frozen=True, slots=True)
class Request:
    """One thing a user asked, from any front end."""

    chat_id: int
    text: str = ""  # what goes to the model, or a command's name
    topic_id: int = 0  # the forum topic, or 0: each topic has its own conversation
    user_id: int | None = None  # None: the operator at a terminal, never limited
    update_id: int | None = None  # the front end's id for this delivery (Telegram's update_id); None: no repeats
    route: dict[str, Any] | None = None  # the front end's data for delivering the reply after a crash


@dataclass(frozen=True, slots=True)
class Refused:
    """Why the bot does not act on a request: "repeated" (answered before: say nothing), "blocked" or
    "not_allowed" (say so only when `notify`: once a day), "empty" (no text for the model), "rate_limited"
    (`seconds` until the user may send again), "over_budget" (a daily token budget is spent: `budget`)."""

    reason: Literal["repeated", "blocked", "not_allowed", "empty", "rate_limited", "over_budget"]
    seconds: int = 0
    notify: bool = True
    budget: OverBudget | None = None  # for "over_budget": whose, how big, `seconds` until it resets


REPEATED = Refused("repeated")
MAX_USER_ID = 2**52  # Telegram's user ids fit in 52 bits; an admin typing more has made a mistake


def parse_user_id(text: str) -> int | None:
    """A Telegram user id typed by an admin (ASCII digits, 1 to MAX_USER_ID), or None."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 16):
        return None
    value = int(digits)
    return value if 0 < value < MAX_USER_ID else None


class Gate:
    def __init__(
        self,
        store: GateStore,
        limiter: RateLimiter,
        admins: frozenset[int],
        access: Access | None = None,
        usage: Usage | None = None,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.admins = admins
        self.access = access or Access()
        self.usage = usage

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.admins

    async def claim(self, request: Request) -> bool:
        """True the first time the request's update is claimed (always without an update id); a repeat is logged."""
        if request.update_id is None or await self.store.claim_update(request.update_id):
            return True
        log.info("update_repeated", action="ignored")
        return False

    async def admit(self, request: Request, *, turn: bool) -> Refused | None:
        """None when the request may go on, else why not. A request that is not a turn (a command, something the
        bot cannot read) is claimed here first; a turn is claimed by the engine in the transaction that stores its
        message, so it is claimed here only when it is refused."""
        if not turn and not await self.claim(request):
            return REPEATED
        refusal = await self._no_access(request)
        if refusal is None and turn and not request.text.strip():
            refusal = Refused("empty")
        if refusal is None:
            refusal = await self._over_limit(request)  # first: a user over budget is still held to the rate
        if refusal is None and turn:
            refusal = await self._over_budget(request)
        if refusal is not None and turn and not await self.claim(request):
            return REPEATED
        return refusal

    async def _no_access(self, request: Request) -> Refused | None:
        """A blocked user, or one the access lists leave out: refused, told so at most once a day (UTC)."""
        user = request.user_id
        if user is None or self.is_admin(user):
            return None
        if await self.store.is_blocked(user):
            reason: Literal["blocked", "not_allowed"] = "blocked"
        elif not self.access.allows(user, request.chat_id):
            reason = "not_allowed"
        else:
            return None
        notify = await self.store.claim_refusal_notice(user, datetime.now(UTC).date().isoformat())
        log.info("access_refused", reason=reason, notified=notify)
        return Refused(reason, notify=notify)

    async def _over_budget(self, request: Request) -> Refused | None:
        """A turn of a user whose daily token budget (or everyone's) is spent; admins have none."""
        if self.usage is None or request.user_id is None or self.is_admin(request.user_id):
            return None
        over = await self.usage.over_budget(request.user_id)
        if over is None:
            return None
        log.info("over_budget", whose=over.whose, budget=over.budget)
        return Refused("over_budget", over.seconds, budget=over)

    async def _over_limit(self, request: Request) -> Refused | None:
        if request.user_id is None or self.is_admin(request.user_id):
            return None
        wait = await self.limiter.admit(request.user_id)
        if wait <= 0:
            return None
        log.info("rate_limited", seconds=round(wait, 1))
        return Refused("rate_limited", max(1, round(wait)))
