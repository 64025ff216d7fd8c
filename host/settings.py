"""Settings from the environment and `.env`, validated once at start (pydantic-settings).

Secrets are SecretStr so that they never print in a repr or a log line. Imports only host.errors.
"""

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from host.errors import ConfigError


class Settings(BaseSettings):
    """Every knob of the bot; the README's configuration table lists them."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    telegram_bot_token: SecretStr | None = None
    telegram_webhook_url: str | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_webhook_secret: SecretStr | None = None
    telegram_group_trigger: Literal["mention", "all"] = "mention"
    webhook_host: str = "0.0.0.0"  # the webhook is reached from outside (or from a proxy in front)
    webhook_port: int = Field(default=8080, ge=1, le=65535)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)

    llm_base_url: str = "http://localhost:11434/v1"
    llm_model_name: str = "gpt-oss:20b"
    # the models a chat may choose with /model, all on LLM_BASE_URL; empty: LLM_MODEL_NAME only
    llm_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    llm_api_key: SecretStr = SecretStr("ollama")
    llm_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    llm_max_tokens: int = Field(default=2048, gt=0)
    llm_timeout: float = Field(default=120.0, gt=0)
    llm_retry_attempts: int = Field(default=3, ge=1)
    llm_max_concurrent_calls: int = Field(default=10, ge=1)
    llm_stream_tool_turns: bool = True
    llm_max_tool_steps: int = Field(default=8, ge=1)
    llm_max_context_tokens: int = Field(default=8000, gt=0)
    max_history_messages: int = Field(default=50, gt=0)
    llm_system_prompt: str | None = None
    llm_system_prompt_file: Path | None = None
    mcp_tool_result_max_chars: int = Field(default=16_000, gt=0)

    database_url: str = Field(default="sqlite+aiosqlite:///./data/mcpbot.db", repr=False)
    redis_url: str | None = Field(default=None, repr=False)

    # Message content at rest (host/storage/sealing.py): unset means stored in clear. Old keys, comma-separated,
    # stay readable after a rotation; new content is always sealed with SECRET_KEY.
    secret_key: SecretStr | None = None
    secret_key_previous: SecretStr | None = None

    admin_user_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    admin_api_token: SecretStr | None = None  # the admin HTTP API's bearer token; unset: no admin API
    # Unset both: anyone may use the bot. Set: only these users, in any chat, and anyone in these chats.
    allowed_user_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    allowed_chat_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    rate_limit_user_requests: int = Field(default=20, gt=0)
    rate_limit_user_window: int = Field(default=60, gt=0)
    rate_limit_global_requests: int = Field(default=100, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    mcp_servers_config: Path = Path("./mcp_servers.json")

    # Telegram polling: the longest wait between getUpdates retries during an outage
    telegram_poll_retry_max_seconds: float = Field(default=30.0, gt=0)
    # The webhook server: open connections at most, and seconds for a request's head and body
    webhook_max_connections: int = Field(default=200, ge=1, le=10_000)
    webhook_read_timeout: float = Field(default=10.0, gt=0)
    # GET /metrics, /health and /ready on a server of their own (polling mode's only one); unset means none
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Engine limits for a broken or hostile model
    llm_max_tool_calls_per_step: int = Field(default=16, ge=1)
    llm_max_tool_calls_per_turn: int = Field(default=64, ge=1)
    llm_max_tool_argument_bytes: int = Field(default=64 * 1024, ge=64)
    llm_max_response_bytes: int = Field(default=2 * 1024 * 1024, ge=4096)
    llm_max_answer_chars: int = Field(default=32_000, ge=100)
    # past this share of LLM_MAX_CONTEXT_TOKENS the tool definitions are not sent: the model searches them
    llm_tools_context_share: float = Field(default=0.25, gt=0, le=1)
    # crash recovery (host/telegram/recovery.py): unanswered messages younger than this are answered after a restart
    recover_window_seconds: float = Field(default=600.0, ge=0)
    # messages older than this many days are deleted by a background job (0: kept forever)
    retention_days: int = Field(default=30, ge=0)
    # tokens a user (and all users together) may spend a day, UTC; 0: no budget (host/service/usage.py)
    user_daily_token_budget: int = Field(default=0, ge=0)
    daily_token_budget: int = Field(default=0, ge=0)
    # write each tool call's server and tool name (never its arguments or result) to the audit log
    audit_tool_calls: bool = False
    # messages a second a broadcast sends, all broadcasts of the process together (Telegram allows about 30)
    broadcast_per_second: int = Field(default=25, ge=1, le=30)

    @field_validator("admin_user_ids", "allowed_user_ids", "allowed_chat_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        """Accept `1,2,3` (and spaces) as well as a JSON list."""
        if isinstance(value, str):
            return [int(part) for part in value.replace(",", " ").split()]
        return value

    @field_validator("llm_models", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        """Accept `a,b` (spaces around a name are dropped, empty names too) as well as a JSON list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_token(cls, value: SecretStr | None) -> SecretStr | None:
        """Telegram accepts 1-256 characters of A-Z, a-z, 0-9, _ and - as a webhook's secret token."""
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("use 1 to 256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("secret_key", "secret_key_previous", mode="before")
    @classmethod
    def _unset_key_when_empty(cls, value: object) -> object:
        """`SECRET_KEY=` (empty) means unset, as leaving it out does."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("secret_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        """At least 16 characters (32 random bytes in hex is the advice), no comma (it may become a previous key)."""
        if value is not None:
            key = value.get_secret_value().strip()
            if len(key) < 16 or "," in key:
                raise ValueError("use at least 16 characters and no comma, for example: openssl rand -hex 32")
        return value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        """`METRICS_PORT=` (empty) means unset, as leaving it out does."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_api_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        """A token anyone could guess would open the admin API: at least 24 characters, no spaces."""
        if value is not None and (
            len(value.get_secret_value()) < 24 or any(c.isspace() for c in value.get_secret_value())
        ):
            raise ValueError("must be at least 24 characters without spaces (for example: openssl rand -hex 32)")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    # Where the bot keeps its files: made absolute at start, from the working
    # directory like every relative setting; the default DATABASE_URL and `${DATA_DIR}` in mcp_servers.json use it.
    data_dir: Path = Path("./data")

    @model_validator(mode="after")
    def _absolute_data_dir(self) -> "Settings":
        self.data_dir = Path(os.path.abspath(self.data_dir.expanduser()))
        if "database_url" not in self.model_fields_set:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'mcpbot.db'}"
        return self


def load_settings() -> Settings:
    """Settings from the environment and `.env`; a bad value is one ConfigError naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, error['loc'])).upper()}: {error['msg']}" for error in exc.errors())
        raise ConfigError(f"invalid setting: {problems}") from None
