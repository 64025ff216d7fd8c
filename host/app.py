"""The composition root: opens the MCP registry, the conversation store, the model client and the rate limiter in
one task, builds the engine and the service on them, and closes everything in reverse. The only module that
imports every layer; front ends use `App.service` and `App.settings`."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog

from host import log as logs
from host.engine.llm import ChatModel, ModelSettings
from host.engine.loop import Engine, EngineSettings
from host.engine.prompt import DEFAULT_SYSTEM_PROMPT
from host.errors import ConfigError
from host.mcp.config import ServerConfig, load_servers
from host.mcp.registry import Registry
from host.ratelimit import open_rate_limiter
from host.service import Access, Budgets, Service
from host.settings import Settings
from host.storage import ConversationStore, Sealer

log = structlog.get_logger("host.app")


@dataclass(frozen=True, slots=True)
class App:
    settings: Settings
    registry: Registry
    store: ConversationStore
    model: ChatModel
    engine: Engine
    service: Service


def system_prompt_text(settings: Settings) -> str:
    """LLM_SYSTEM_PROMPT_FILE, else LLM_SYSTEM_PROMPT, else the default."""
    if settings.llm_system_prompt_file is not None:
        try:
            return settings.llm_system_prompt_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"LLM_SYSTEM_PROMPT_FILE: cannot read {settings.llm_system_prompt_file}: {exc}") from None
    return settings.llm_system_prompt or DEFAULT_SYSTEM_PROMPT


def model_settings(settings: Settings) -> ModelSettings:
    return ModelSettings(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value(),
        model=settings.llm_model_name,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
        timeout=settings.llm_timeout,
        retry_attempts=settings.llm_retry_attempts,
        stream_tool_turns=settings.llm_stream_tool_turns,
        max_concurrent_calls=settings.llm_max_concurrent_calls,
        max_response_bytes=settings.llm_max_response_bytes,
    )


def sealer(settings: Settings) -> Sealer:
    """The keys message content is sealed with (SECRET_KEY) and opened with (and SECRET_KEY_PREVIOUS); each one
    hidden from every log line."""
    current = settings.secret_key.get_secret_value() if settings.secret_key else None
    previous = settings.secret_key_previous.get_secret_value() if settings.secret_key_previous else None
    for key in [current or "", *(previous or "").split(",")]:
        logs.hide(key.strip())
    return Sealer.from_settings(current, previous)


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[App]:
    """Everything the front ends need, opened together (the servers concurrently) and closed in reverse."""

    def server_list() -> list[ServerConfig]:
        return load_servers(settings.mcp_servers_config, data_dir=settings.data_dir)

    servers = server_list()
    engine_settings = EngineSettings(
        system_prompt=system_prompt_text(settings),
        max_tool_steps=settings.llm_max_tool_steps,
        max_context_tokens=settings.llm_max_context_tokens,
        max_history_messages=settings.max_history_messages,
        answer_tokens=settings.llm_max_tokens,
        max_tool_calls_per_step=settings.llm_max_tool_calls_per_step,
        max_tool_calls_per_turn=settings.llm_max_tool_calls_per_turn,
        max_tool_argument_bytes=settings.llm_max_tool_argument_bytes,
        max_answer_chars=settings.llm_max_answer_chars,
        max_tool_result_chars=settings.mcp_tool_result_max_chars,
        tools_share=settings.llm_tools_context_share,
    )
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(ConversationStore.open(settings.database_url, sealer(settings)))
        if not store.sealer.seals:
            log.warning("content_stored_in_clear", hint="set SECRET_KEY to encrypt message content at rest")
        if (problem := await store.unreadable_content()) is not None:
            log.error("content_unreadable", error=problem)
        registry = await stack.enter_async_context(Registry(servers))
        model = await stack.enter_async_context(ChatModel(model_settings(settings)))
        limiter = await stack.enter_async_context(
            open_rate_limiter(
                settings.redis_url,
                user_limit=settings.rate_limit_user_requests,
                global_limit=settings.rate_limit_global_requests,
                window=settings.rate_limit_user_window,
            )
        )
        engine = Engine(model, registry, store, engine_settings)
        service = Service(
            engine,
            registry,
            store,
            model,
            limiter,
            admins=frozenset(settings.admin_user_ids),
            access=Access(frozenset(settings.allowed_user_ids), frozenset(settings.allowed_chat_ids)),
            server_list=server_list,
            retention_days=settings.retention_days,
            data_dir=settings.data_dir,
            default_model=settings.llm_model_name,
            models=settings.llm_models,
            default_temperature=settings.llm_temperature,
            budgets=Budgets(settings.user_daily_token_budget, settings.daily_token_budget),
            audit_tool_calls=settings.audit_tool_calls,
        )
        yield App(settings, registry, store, model, engine, service)
