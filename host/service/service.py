"""The one path from any front end to the engine: the gate (claim, empty text, rate limit, admin rules), turns
and resumed turns (with each chat's own settings, host.service.preferences), the replies owed after a crash and
their leases, usage and budgets (host.service.usage), /forget, /export and the chore that forgets old rows
(host.service.privacy), broadcasts (host.service.broadcasts), and the status values front ends format. Front ends
import this package, the app and the errors only.
"""

import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import asdict, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

import anyio
import structlog

from host import metrics
from host.engine.events import EngineEvent, ModelCalled, ToolFinished, TurnFinished
from host.engine.llm import ChatModel
from host.engine.loop import Engine
from host.errors import ConfigError, StorageError
from host.mcp.config import ServerConfig
from host.mcp.registry import Registry, Reloaded
from host.ratelimit import RateLimiter
from host.redact import redact_clipped
from host.service import status
from host.service.broadcasts import Broadcasting, BroadcastRefused, Started
from host.service.export import ExportFiles
from host.service.gate import Access, Gate, Refused, Request
from host.service.preferences import ChatSettingsView, Preferences, SettingRefused, Who
from host.service.privacy import Forgotten, Privacy
from host.service.usage import Budgets, Stats, Usage, UsageView
from host.storage import ConversationStore, StoredMessage
from host.storage.audit import Audited
from host.storage.broadcasts import Progress
from host.storage.pending import Orphan
from host.storage.usage import Spent

log = structlog.get_logger("host.service")

RECORD_SECONDS = 5.0  # a turn's usage is still recorded when it is cancelled, within this


class Service:
    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        store: ConversationStore,
        model: ChatModel,
        limiter: RateLimiter,
        *,
        admins: frozenset[int] = frozenset(),
        access: Access | None = None,
        server_list: Callable[[], Sequence[ServerConfig]] | None = None,
        retention_days: int = 0,
        data_dir: Path | None = None,
        default_model: str = "",
        models: Sequence[str] = (),
        default_temperature: float = 0.7,
        budgets: Budgets | None = None,
        audit_tool_calls: bool = False,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.store = store
        self.model = model
        self.usage = Usage(store.usage, budgets or Budgets())
        self.gate = Gate(store, limiter, admins, access, self.usage)
        self.audit_tool_calls = audit_tool_calls  # AUDIT_TOOL_CALLS: each call's server and tool in the audit log
        self.running = 0  # turns this process runs now
        self.server_list = server_list  # reads mcp_servers.json again, for `reload`
        self.privacy = Privacy(store, registry, retention_days=retention_days, data_dir=data_dir)
        self.preferences = Preferences(
            store,
            default_model=default_model,
            allowed_models=list(models),
            default_temperature=default_temperature,
            admins=admins,
        )

    # -- the gate ---------------------------------------------------------------------------------------------
    def is_admin(self, user_id: int | None) -> bool:
        return self.gate.is_admin(user_id)

    async def admit(self, request: Request, *, turn: bool) -> Refused | None:
        """None when the request may go on (see Gate.admit). A refusal, or a database that fails the gate, is a
        message in bot_messages_total (a repeated delivery is not)."""
        try:
            refusal = await self.gate.admit(request, turn=turn)
        except StorageError:
            metrics.STORAGE_ERRORS.inc()
            self._counted("failed", request.user_id)
            raise
        if refusal is not None and refusal.reason != "repeated":
            self._counted("refused", request.user_id)
        elif refusal is None and not turn and request.user_id is not None and request.chat_id == request.user_id:
            await self._reachable_again(request.user_id)  # a turn does it in the transaction storing its message
        return refusal

    async def _reachable_again(self, user_id: int) -> None:
        try:
            await self.store.broadcasts.reachable_again(user_id)
        except StorageError as error:
            log.warning("reachability_not_recorded", error=str(error))

    def refused(self, request: Request) -> None:
        """A front end refused the request itself (over its own length limits): counted as a refused message."""
        self._counted("refused", request.user_id)

    def _counted(self, status: str, user_id: int | None) -> None:
        metrics.message(status, admin=self.is_admin(user_id), user_id=user_id)

    async def block(self, user_id: int, by: int | None) -> Literal["blocked", "already", "admin"]:
        """Block a user (by an admin, or None: the operator); admins cannot be blocked."""
        if self.is_admin(user_id):
            return "admin"
        blocked = await self.store.block_user(user_id, by)
        log.info("user_blocked" if blocked else "user_already_blocked", blocked_user=user_id, by=by)
        if blocked:
            await self.store.audit.record(by, "block", user_id)
        return "blocked" if blocked else "already"

    async def unblock(self, user_id: int, by: int | None) -> bool:
        """Unblock a user; False when they were not blocked."""
        unblocked = await self.store.unblock_user(user_id)
        log.info("user_unblocked" if unblocked else "user_not_blocked", unblocked_user=user_id, by=by)
        if unblocked:
            await self.store.audit.record(by, "unblock", user_id)
        return unblocked

    async def forget(self, user_id: int) -> Forgotten:
        """/forget: everything kept of the user (host.service.privacy)."""
        return await self.privacy.forget(user_id)

    async def export(self, user_id: int | None, *, terminal_chat: int = 0) -> ExportFiles:
        """/export: what the user may take away, as a JSON and a Markdown file (host.service.privacy)."""
        return await self.privacy.export(user_id, terminal_chat=terminal_chat)

    async def claim(self, request: Request) -> bool:
        """The one claim of an update the bot answers without a turn; False for a repeated delivery."""
        return await self.gate.claim(request)

    # -- turns ------------------------------------------------------------------------------------------------
    async def turn(self, request: Request) -> AsyncGenerator[EngineEvent, None]:
        """The engine's turn for an admitted request. A message refused before it was stored (it cannot fit the
        context) is claimed here, so a repeated delivery yields nothing, as a repeated stored one does. The chat's
        own settings, as they are now, apply to the turn."""
        async with aclosing(self._measured(self._with_preferences(request), request.user_id)) as events:
            async for event in events:
                if isinstance(event, TurnFinished) and event.refused and not await self.claim(request):
                    return
                yield event

    async def _with_preferences(self, request: Request) -> AsyncGenerator[EngineEvent, None]:
        chosen = await self.preferences.for_turn(request.chat_id, request.topic_id)
        turn = self.engine.turn(
            request.chat_id,
            request.text,
            user_id=request.user_id,
            topic_id=request.topic_id,
            update_id=request.update_id,
            route=request.route,
            preferences=chosen,
        )
        async with aclosing(turn) as events:
            async for event in events:
                yield event

    async def _measured(
        self, turn: AsyncGenerator[EngineEvent, None], user_id: int | None
    ) -> AsyncGenerator[EngineEvent, None]:
        """The turn's events, while bot_active_sessions counts it; its end is a message in bot_messages_total
        (answered, refused, or failed when it raised; a repeated delivery, which yields nothing, is not counted).
        Whatever the model calls cost is added to the user's usage however the turn ends (an answered turn also
        counts as an answer, with its time); with AUDIT_TOOL_CALLS each tool call is audited."""
        status: str | None = None
        started = time.perf_counter()
        spent = Spent()
        metrics.ACTIVE_SESSIONS.inc()
        self.running += 1
        try:
            async with aclosing(turn) as events:
                async for event in events:
                    spent = _add(spent, event, time.perf_counter() - started)
                    if isinstance(event, TurnFinished):
                        status = "refused" if event.refused else "answered"
                    elif isinstance(event, ToolFinished) and self.audit_tool_calls:
                        await self._audit_tool_call(user_id, event)
                    yield event
        except StorageError:
            status = status or "failed"
            metrics.STORAGE_ERRORS.inc()
            raise
        except GeneratorExit:
            raise
        except BaseException:
            status = status or "failed"
            raise
        finally:
            self.running -= 1
            metrics.ACTIVE_SESSIONS.dec()
            if status is not None:
                self._counted(status, user_id)
            if spent.llm_calls:
                with anyio.CancelScope(shield=True), anyio.move_on_after(RECORD_SECONDS):
                    await self.usage.record(user_id, spent)

    async def _audit_tool_call(self, user_id: int | None, event: ToolFinished) -> None:
        try:
            known = event.server != "?"  # a name the model made up is its text: never kept
            tool = event.tool if known else "?"
            await self.store.audit.record(user_id, "tool_call", server=event.server, tool=tool, ok=event.ok)
        except StorageError as error:
            log.warning("tool_call_not_audited", error=str(error))

    def resume(self, orphan: Orphan) -> AsyncGenerator[EngineEvent, None]:
        """The turn of a stored message whose reply a crash left owed, run again on the stored history."""
        message = StoredMessage(
            role="user",
            content=orphan.text,
            tool_calls=None,
            tool_call_id=None,
            token_count=orphan.token_count,
            id=orphan.message_id,
            created_at=orphan.created_at,
        )
        return self._measured(self._resumed(orphan, message), orphan.user_id)

    async def _resumed(self, orphan: Orphan, message: StoredMessage) -> AsyncGenerator[EngineEvent, None]:
        chosen = await self.preferences.for_turn(orphan.chat_id, orphan.topic_id)
        turn = self.engine.resume(orphan.chat_id, orphan.topic_id, orphan.conversation_id, message, chosen)
        async with aclosing(turn) as events:
            async for event in events:
                yield event

    async def reset(self, chat_id: int, topic_id: int = 0) -> None:
        """A new conversation in the chat; the old one stays stored but leaves the window."""
        await self.engine.reset(chat_id, topic_id)

    # -- a chat's own settings (host.service.preferences) ---------------------------------------------------------
    async def chat_settings(self, chat_id: int, topic_id: int = 0) -> ChatSettingsView:
        """What the chat's next turn is given; anyone in the chat may see it."""
        return await self.preferences.view(chat_id, topic_id)

    def may_change_settings(self, who: Who) -> bool:
        return self.preferences.may_change(who)

    async def choose_model(self, who: Who, name: str) -> ChatSettingsView | SettingRefused:
        """One of the offered models (settings LLM_MODEL_NAME and LLM_MODELS) for the chat's next turns."""
        return await self.preferences.choose_model(who, name)

    async def choose_temperature(self, who: Who, text: str) -> ChatSettingsView | SettingRefused:
        return await self.preferences.choose_temperature(who, text)

    async def choose_system_prompt(self, who: Who, text: str) -> ChatSettingsView | SettingRefused:
        return await self.preferences.choose_system_prompt(who, text)

    async def switch_server(self, who: Who, name: str, *, on: bool) -> ChatSettingsView | SettingRefused:
        """/mcp: offer a configured server's tools to this chat's model again (on), or stop offering them."""
        return await self.preferences.switch_server(who, name, on=on, servers=self.registry.names())

    async def reset_settings(self, who: Who) -> ChatSettingsView | SettingRefused:
        """The chat's settings back to the operator's defaults (`/reset settings`; a plain reset keeps them)."""
        return await self.preferences.reset(who)

    # -- replies owed -----------------------------------------------------------------------------------------
    async def preview_shown(self, update_id: int, message_id: int) -> None:
        """Remember the preview message of a reply owed; a failure only costs its "cut off" mark after a crash."""
        try:
            await self.store.preview_shown(update_id, message_id)
        except StorageError as error:
            log.warning("preview_not_recorded", error=str(error))

    async def delivered(self, update_id: int) -> None:
        """Nothing is owed for the update any more; a failure to record it is logged (it may be answered again
        after a crash)."""
        try:
            await self.store.reply_delivered(update_id)
        except StorageError as error:
            log.warning("delivery_not_recorded", error=str(error))

    async def claim_orphans(self, *, lapsed_only: bool) -> list[Orphan]:
        """The replies owed that are this process's to deliver now; none when the database does not answer."""
        try:
            orphans = await self.store.claim_orphans(lapsed_only=lapsed_only)
        except StorageError as error:
            log.warning("unanswered_not_claimed", error=str(error))
            return []
        if orphans or not lapsed_only:
            log.info("unanswered_claimed", count=len(orphans))
        return orphans

    async def renew_leases(self) -> bool:
        try:
            await self.store.renew_leases()
        except StorageError as error:
            log.warning("leases_not_renewed", error=str(error))
            return False
        return True

    async def forget_old(self) -> None:
        """The chore that forgets what is kept only for a while (host.service.privacy)."""
        await self.privacy.forget_old()

    async def forget_old_once(self) -> bool:
        return await self.privacy.forget_old_once()

    # -- servers ----------------------------------------------------------------------------------------------
    async def reload(self, by: int | None = None) -> Reloaded:
        """Read mcp_servers.json again and apply it (see Registry.reload), for an admin (None: the operator). A
        file that does not load raises its ConfigError and changes nothing."""
        if self.server_list is None:
            raise ConfigError("this bot was started without a server list to reload")
        try:
            reloaded = await self.registry.reload(self.server_list())
        except ConfigError as error:
            await self.store.audit.record(by, "reload", refused=redact_clipped(str(error), 300))
            raise
        await self.store.audit.record(by, "reload", **asdict(reloaded))
        return reloaded

    # -- usage (host.service.usage) -----------------------------------------------------------------------------
    async def usage_of(self, user_id: int | None) -> UsageView:
        """The user's tokens and calls today, and their budget (admins and the terminal have none)."""
        return await self.usage.of_user(user_id, budgeted=user_id is not None and not self.is_admin(user_id))

    async def stats(self) -> Stats:
        """The admin's figures for today, across replicas (the running turns are this process's)."""
        return await self.usage.stats(self.running)

    # -- status -----------------------------------------------------------------------------------------------
    async def servers(self, chat_id: int = 0) -> list[status.ServerStatus]:
        return await status.servers(self.registry, chat_id)

    async def tools(self, chat_id: int = 0) -> list[status.ToolInfo]:
        return status.tools(await self.registry.catalogue(chat_id))

    async def model_answers(self) -> bool:
        """Whether the model answers (a 1-token completion when it does not list itself). Never raises."""
        return await self.model.healthy()

    async def readiness(self) -> status.Readiness:
        """For probes anyone may send: the model is asked only for its list of models, never for a completion."""
        return await status.readiness(self.registry, self.store.healthy, lambda: self.model.healthy(generate=False))

    async def audit_log(self, limit: int) -> list[Audited]:
        """The newest audit entries, newest first, for the admin API."""
        return await self.store.audit.recent(limit)

    # -- broadcasts (host.service.broadcasts; sent by the front end's sender) ------------------------------------
    @cached_property
    def broadcasting(self) -> Broadcasting:
        """The broadcasts' rows and the doorbell of this process's sender."""
        return Broadcasting(self.store)

    async def broadcast(self, text: str, by: int | None) -> Started | BroadcastRefused:
        """Send `text` to every known user who neither blocked the bot nor is blocked, for an admin (None: the
        operator); an empty text, or one over Telegram's 4096 characters, is refused. Audited with the number of
        recipients, never the text."""
        started = await self.broadcasting.start(text, by)
        if isinstance(started, Started):
            log.info("broadcast_created", broadcast=started.id, recipients=started.recipients, by=by)
        return started

    async def broadcast_progress(self, broadcast_id: int) -> Progress | None:
        """A broadcast's counts by state; None when there is no such broadcast."""
        return await self.broadcasting.progress(broadcast_id)


def _add(spent: Spent, event: EngineEvent, seconds: float) -> Spent:
    """What a turn has cost so far, after `event`: a model call's tokens, a tool call, or the answer (with the
    turn's time)."""
    if isinstance(event, ModelCalled):
        tokens = event.usage.prompt_tokens + event.usage.completion_tokens
        return replace(spent, tokens=spent.tokens + tokens, llm_calls=spent.llm_calls + 1)
    if isinstance(event, ToolFinished):
        return replace(spent, tool_calls=spent.tool_calls + 1)
    if isinstance(event, TurnFinished) and not event.refused:
        return replace(spent, turns=1, seconds=seconds)
    return spent
