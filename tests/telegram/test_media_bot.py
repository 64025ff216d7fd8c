"""Media out, end to end: `mcpbot run` against the fake Bot API, a scripted model and our test MCP server. An
image a tool gives back arrives as a photo after the answer and a binary resource as a document with its own
name; the model only ever sees a short description; a file Telegram refuses costs only that file."""

import base64
from pathlib import Path

from tests.conftest import peer_server
from tests.peers.mcp_test_server import PNG_1X1
from tests.peers.openai_server import Call, Reply, ScriptedModelServer, tool_results
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess


def test_an_image_arrives_as_a_photo_and_a_blob_as_a_document_after_the_answer(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(
        Reply(tool_calls=(Call("peer__image", {}), Call("peer__report", {}))),
        lambda body: Reply(text=f"Here they are. {' | '.join(tool_results(body))}"),
        Reply(tool_calls=(Call("peer__image", {}),)),
        Reply(text="Another one."),
    )
    with BotProcess(api, model, tmp_path, servers={"peer": peer_server()}) as bot:
        api.push_message(42, "show me the chart and the report")
        bot.wait_until(lambda: len(api.documents(42)) == 1 and len(api.documents(42, "photo")) == 1, timeout=30)
        api.fail("sendPhoto", 400, "Bad Request: IMAGE_PROCESS_FAILED")
        api.push_message(42, "once more")
        bot.wait_until(lambda: len(api.texts(42)) == 2 and bot.log.count('"media_not_sent"') == 1, timeout=30)
    answer = api.texts(42)[0]
    assert answer.startswith("Here they are. [image: image/png,") and "[resource file:///reports/q3.pdf" in answer
    assert base64.b64encode(PNG_1X1).decode() not in str(model.bodies)  # the model never got the bytes
    (photo,) = api.documents(42, "photo")
    assert (photo["file_name"], photo["data"]) == ("image-1.png", PNG_1X1)
    (document,) = api.documents(42)
    assert (document["file_name"], document["data"]) == ("q3.pdf", b"%PDF-1.4 a tiny report")
    methods = [call.method for call in api.calls if call.method in ("sendMessage", "sendPhoto", "sendDocument")]
    assert methods.index("sendPhoto") > methods.index("sendMessage")  # after the answer
    assert api.texts(42)[1] == "Another one."
