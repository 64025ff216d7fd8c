"""`mcpbot run` end to end against a broken or hostile model and forged input (issue 9, items 13 and 14): a huge
answer arrives cut with a note while other chats go on, and text the bot cannot take is refused clearly."""

import time
from pathlib import Path

from tests.peers.openai_server import Reply, ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI, parse_html, utf16_len
from tests.telegram.botrun import BotProcess


def test_a_megabyte_answer_arrives_cut_with_a_note_while_another_chat_is_answered(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    huge = "".join(f"Line {k} of a **very** long answer with `code` and _more_.\n" for k in range(20_000))  # 1.1 MB
    model.always(
        lambda body: (
            Reply(text=huge, chunks=400, drip=0.005)
            if body["messages"][-1]["content"] == "tell me everything"
            else Reply(text="quick answer")
        )
    )
    with BotProcess(api, model, tmp_path) as bot:
        api.push_message(1, "tell me everything")
        bot.wait_until(lambda: any(sent["chat_id"] == 1 for sent in api.sent()), timeout=20)  # previews flow
        asked = time.monotonic()
        api.push_message(2, "a quick question")
        bot.wait_until(lambda: api.texts(2) == ["quick answer"], timeout=20)
        answered_in = time.monotonic() - asked
        bot.wait_until(lambda: any("answer cut at" in text for text in api.texts(1)), timeout=60)
    assert answered_in < 5
    texts = api.texts(1)
    assert texts[-1].endswith("… (answer cut at 32,000 characters)")
    assert 7 <= len(texts) <= 10 and all(utf16_len(text) <= 4096 for text in texts)
    assert texts[0].startswith("Line 0 of a very long answer with code and more.")
    assert all(parse_html(raw) for raw in api.raw_texts(1))


def test_text_over_telegrams_limit_is_refused_and_never_reaches_the_model(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.always(Reply(text="fine"))
    with BotProcess(api, model, tmp_path) as bot:
        api.push_message(42, "x" * 5_000)  # Telegram itself never sends this: a forged update
        bot.wait_until(lambda: len(api.texts(42)) == 1)
        api.push_message(42, "and a normal one")
        bot.wait_until(lambda: len(api.texts(42)) == 2)
    assert (
        api.texts(42)[0]
        == "⚠️ This message is longer than Telegram allows, so I did not read it. Please send it shorter."
    )
    assert api.texts(42)[1] == "fine"
    assert [m["content"] for m in model.bodies[0]["messages"] if m["role"] == "user"] == ["and a normal one"]


def test_a_message_too_long_for_the_context_gets_a_clear_reply_and_no_request(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    env = {"LLM_MAX_CONTEXT_TOKENS": "2500", "LLM_MAX_TOKENS": "500"}
    with BotProcess(api, model, tmp_path, env=env) as bot:
        api.push_message(42, "1 " * 2_000)  # within Telegram's limit, about 4,000 tokens
        bot.wait_until(lambda: len(api.texts(42)) == 1)
    assert api.texts(42)[0].startswith("⚠️ Your message is too long for me: about 4,004 tokens, and at most")
    assert model.requests == []
