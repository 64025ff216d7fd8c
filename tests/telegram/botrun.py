"""`mcpbot run` as a subprocess against the fake Bot API and the scripted model, for end-to-end tests and the
load benchmark. The bot's stderr goes to a file that a failing test shows."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.conftest import ROOT
from tests.peers.openai_server import ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI

START_TIMEOUT = 60.0
RECHECK = 0.1


class BotProcess:
    """One `python -m host run`; `start()` returns when it polls (or its webhook is registered)."""

    def __init__(
        self,
        api: FakeBotAPI,
        model: ScriptedModelServer,
        folder: Path,
        *,
        servers: dict[str, Any] | None = None,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.api = api
        self.cwd = cwd
        self.folder = folder
        config = folder / "mcp_servers.json"
        config.write_text(json.dumps({"mcpServers": servers or {}}))
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(folder),
            "TELEGRAM_BOT_TOKEN": api.token,
            "TELEGRAM_API_BASE_URL": api.base_url,
            "MCP_SERVERS_CONFIG": str(config),
            "DATABASE_URL": database_url or f"sqlite+aiosqlite:///{folder}/data/mcpbot.db",
            "LLM_BASE_URL": model.base_url,
            "LLM_MODEL_NAME": model.model,
            "LLM_RETRY_ATTEMPTS": "1",
            "LOG_FORMAT": "json",
            **(env or {}),
        }
        self.log_path = folder / "bot.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def start(self, *, wait: bool = True) -> "BotProcess":
        self._starts += 1
        webhooks_before = len(self.api.calls_of("setWebhook"))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "host", "run"], cwd=self.cwd, env=self.env, stdout=log, stderr=log
            )
        if wait:
            webhook = bool(self.env.get("TELEGRAM_WEBHOOK_URL"))
            try:
                self.wait_until(
                    lambda: (
                        len(self.api.calls_of("setWebhook")) > webhooks_before
                        if webhook
                        else self.api.waiting_polls > 0
                    ),
                    timeout=START_TIMEOUT,
                )
            except BaseException:
                self.__exit__(None, None, None)  # no bot is left running after a failed start
                raise
        return self

    def wait_until(self, predicate: Any, timeout: float = 10.0) -> None:
        """Like FakeBotAPI.wait_until, but fails at once, with the bot's log, when the bot exits. The predicate
        is re-checked on every Bot API call and at least every RECHECK seconds, so it may also look elsewhere
        (the scripted model's requests)."""

        def done() -> bool:
            return bool(predicate()) or (self.process is not None and self.process.poll() is not None)

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api.wait_until(done, min(RECHECK, max(deadline - time.monotonic(), 0.0)))
                break
            except TimeoutError as error:
                if time.monotonic() >= deadline:
                    log = self.log[-6000:]
                    raise AssertionError(f"not within {timeout} s: {error}\n--- bot log ---\n{log}") from None
        if not predicate():
            raise AssertionError(f"the bot exited with {self.returncode()}\n--- bot log ---\n{self.log[-6000:]}")

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the bot and wait for it to exit; its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"the bot did not stop within {timeout} s\n--- bot log ---\n{self.log[-6000:]}"
            ) from None

    def __enter__(self) -> "BotProcess":
        """Starts the bot unless `start()` just did."""
        return self if self.returncode() is None and self.process is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
