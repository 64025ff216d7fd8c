"""The template server's tool, resource and prompt. Rename things here; never import `host`."""

from mcp.server import MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel

from servers.protocol import Server

NAME = "template"


class TextStats(BaseModel):
    """What `count_words` returns; the SDK turns it into structured content and an output schema."""

    words: int
    lines: int
    characters: int


def build_server() -> MCPServer:
    server = Server(NAME, instructions="Counts words in text. Use count_words when asked how long a text is.")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def count_words(text: str) -> TextStats:
        """Count the words, lines and characters of a text."""
        return TextStats(words=len(text.split()), lines=len(text.splitlines()), characters=len(text))

    @server.resource(f"{NAME}://about", mime_type="text/markdown")
    def about() -> str:
        """What this server is for."""
        return "# template\n\nAn example MCP server from mcpbot: one tool, one resource, one prompt.\n"

    @server.prompt()
    def summarize(text: str) -> str:
        """Ask the model for a three-sentence summary of a text."""
        return f"Summarize the following text in at most three sentences:\n\n{text}"

    return server
