"""Settings: environment names from the README, .env files, and secrets that never print."""

from pathlib import Path

import pytest

from host.errors import ConfigError
from host.settings import Settings, load_settings


def test_defaults_run_on_sqlite_and_local_ollama(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/data/mcpbot.db"
    assert settings.llm_base_url == "http://localhost:11434/v1"
    assert settings.redis_url is None and settings.admin_user_ids == []
    assert settings.mcp_servers_config == Path("mcp_servers.json")


def test_environment_and_dotenv_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("LLM_MODEL_NAME=gpt-oss:120b-cloud\nADMIN_USER_IDS=1, 22,333\nlog_level=debug\n")
    monkeypatch.setenv("LLM_BASE_URL", "https://ollama.com/v1")
    settings = Settings()
    assert settings.llm_model_name == "gpt-oss:120b-cloud"
    assert settings.llm_base_url == "https://ollama.com/v1"
    assert settings.admin_user_ids == [1, 22, 333]
    assert settings.log_level == "DEBUG"


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:very-secret-token")
    monkeypatch.setenv("LLM_API_KEY", "sk-very-secret")
    settings = Settings()
    assert "very-secret" not in repr(settings) and "very-secret" not in str(settings.model_dump())
    assert settings.telegram_bot_token is not None
    assert settings.telegram_bot_token.get_secret_value() == "123456:very-secret-token"


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLM_TEMPERATURE", "hot")
    with pytest.raises(ConfigError, match="invalid setting: LLM_TEMPERATURE: Input should be a valid number"):
        load_settings()


def test_the_data_folder_is_absolute_and_holds_the_default_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", "state")
    settings = Settings()
    assert settings.data_dir == tmp_path / "state"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/state/mcpbot.db"
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://bot@db/bot")
    assert Settings().database_url == "postgresql+asyncpg://bot@db/bot"  # an explicit URL wins


def test_metrics_are_off_by_default_in_polling_and_listen_on_loopback_when_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (Settings().metrics_port, Settings().metrics_host) == (None, "127.0.0.1")
    monkeypatch.setenv("METRICS_PORT", "")
    assert Settings().metrics_port is None
    monkeypatch.setenv("METRICS_PORT", "9464")
    monkeypatch.setenv("METRICS_HOST", "0.0.0.0")
    assert (Settings().metrics_port, Settings().metrics_host) == (9464, "0.0.0.0")
    monkeypatch.setenv("METRICS_PORT", "70000")
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        load_settings()


ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"
USED_BY_THE_SHIPPED_CONFIG = {"DEMO_DATABASE_URL"}


def example_settings() -> dict[str, str]:
    """The commented assignments of .env.example, by name (each must appear once)."""
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        name, equals, value = line.removeprefix("# ").partition("=")
        if line.startswith("# ") and equals and name.isupper() and " " not in name:
            assert name not in found, f"{name} is in .env.example twice"
            found[name] = value
    return found


def test_env_example_names_every_setting_once_and_nothing_else() -> None:
    names = {field.upper() for field in Settings.model_fields}
    assert set(example_settings()) == names | USED_BY_THE_SHIPPED_CONFIG


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    uncommented = "\n".join(f"{name}={value}" for name, value in example_settings().items())
    (tmp_path / ".env").write_text(uncommented + "\n")
    (tmp_path / "system_prompt.txt").write_text("Be brief.")
    settings = load_settings()
    assert settings.llm_model_name == "gpt-oss:20b" and settings.admin_user_ids == [11111111, 22222222]


def test_secret_key_is_optional_hidden_and_refused_when_weak(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRET_KEY", "")
    assert load_settings().secret_key is None  # empty means unset: content is stored in clear
    monkeypatch.setenv("SECRET_KEY", "k" * 64)
    monkeypatch.setenv("SECRET_KEY_PREVIOUS", "old-key-one-1234,old-key-two-5678")
    settings = load_settings()
    assert "kkkk" not in repr(settings) and "old-key" not in str(settings.model_dump())
    monkeypatch.setenv("SECRET_KEY", "short")
    with pytest.raises(ConfigError, match=r"SECRET_KEY: .*at least 16 characters"):
        load_settings()


@pytest.mark.parametrize("value", ["0", "31"])
def test_broadcasts_are_paced_within_what_telegram_allows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings().broadcast_per_second == 25
    monkeypatch.setenv("BROADCAST_PER_SECOND", value)
    with pytest.raises(ConfigError, match="invalid setting: BROADCAST_PER_SECOND"):
        load_settings()
