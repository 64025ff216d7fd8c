"""The gate every request passes before the bot acts on it, for every front end: the one claim of an update (a
repeated delivery is ignored), empty text, the rate limit (admins are never limited). Values only come out;
the front end words them. Imports storage's claim through a Protocol, the rate limiter and errors.
"""

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog

from host.ratelimit import RateLimiter

log = structlog.get_logger("host.service")


class UpdateClaims(Protocol):
    async def claim_update(self, update_id: int) -> bool: ...


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
    """Why the bot does not act on a request: "repeated" (answered before: say nothing), "empty" (no text for the
    model), "rate_limited" (`seconds` until the user may send again)."""

    reason: Literal["repeated", "empty", "rate_limited"]
    seconds: int = 0


REPEATED = Refused("repeated")


class Gate:
    def __init__(self, claims: UpdateClaims, limiter: RateLimiter, admins: frozenset[int]) -> None:
        self.claims = claims
        self.limiter = limiter
        self.admins = admins

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.admins

    async def claim(self, request: Request) -> bool:
        """True the first time the request's update is claimed (always without an update id); a repeat is logged."""
        if request.update_id is None or await self.claims.claim_update(request.update_id):
            return True
        log.info("update_repeated", action="ignored")
        return False

    async def admit(self, request: Request, *, turn: bool) -> Refused | None:
        """None when the request may go on, else why not. A request that is not a turn (a command, something the
        bot cannot read) is claimed here first; a turn is claimed by the engine in the transaction that stores its
        message, so it is claimed here only when it is refused."""
        if not turn and not await self.claim(request):
            return REPEATED
        refusal = Refused("empty") if turn and not request.text.strip() else await self._over_limit(request)
        if refusal is not None and turn and not await self.claim(request):
            return REPEATED
        return refusal

    async def _over_limit(self, request: Request) -> Refused | None:
        if request.user_id is None or self.is_admin(request.user_id):
            return None
        wait = await self.limiter.admit(request.user_id)
        if wait <= 0:
            return None
        log.info("rate_limited", seconds=round(wait, 1))
        return Refused("rate_limited", max(1, round(wait)))
