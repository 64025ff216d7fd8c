"""A reply on its way (host/telegram/reply.py) against the fake Bot API with a real PTB Bot: previews render only
what they show, and an answer the renderer fails on still arrives, as plain text (issue 9, item 13)."""

import anyio
import pytest
from telegram import Bot

from host.telegram import reply as reply_module
from host.telegram.reply import Reply
from host.telegram.send import Target
from tests.peers.telegram_server import FakeBotAPI

pytestmark = pytest.mark.anyio


async def test_a_preview_renders_only_the_end_it_shows(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[int] = []
    real = reply_module.to_telegram_html

    def counting(markdown: str) -> str:
        rendered.append(len(markdown))
        return real(markdown)

    monkeypatch.setattr(reply_module, "to_telegram_html", counting)
    reply = Reply(bot, Target(42), draft_id=1)
    for k in range(10_000):  # 1 MB streamed in 10,000 pieces
        reply.add_text(f"line {k:05d} " + "w" * 88 + "\n")
    preview = reply._preview_html()
    assert preview.rstrip().endswith("line 09999 " + "w" * 88)
    assert max(rendered) <= 2 * reply_module.PREVIEW_LIMIT  # not the whole megabyte
    assert len(reply.text) == 1_000_000


async def test_an_answer_the_renderer_fails_on_arrives_as_plain_text(
    api: FakeBotAPI, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(markdown: str) -> str:
        raise RecursionError("a renderer bug")

    monkeypatch.setattr(reply_module, "to_telegram_html", broken)
    reply = Reply(bot, Target(42), draft_id=None)
    with anyio.fail_after(10):
        await reply.finish("**still** <here> & safe")
    assert api.texts(42) == ["**still** <here> & safe"]
