"""`search_tools`: when the tool definitions would take more than their share of the context (EngineSettings.
tools_share), the model is offered this one tool instead of them all. It ranks the catalogue's tools by the words
of a query (in a tool's name first, then in its description) and the best matches are offered for the rest of the
turn, within the share."""

import re

from openai.types.chat import ChatCompletionToolParam

from host.mcp.registry import Catalogue, CatalogueEntry
from host.tokens import count_tools_tokens

NAME = "search_tools"
MAX_RESULTS = 8
_WORDS = re.compile(r"[a-z0-9]{2,}")


def definition(count: int) -> ChatCompletionToolParam:
    return {
        "type": "function",
        "function": {
            "name": NAME,
            "description": (
                f"Find the tools for a task among the {count} tools available here. Give a few words of what you"
                " need (for example: read file, weather, sql query); the best matches become callable at once."
            ),
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "words of what the tool should do"}},
                "required": ["query"],
            },
        },
    }


def search(catalogue: Catalogue, query: str) -> list[CatalogueEntry]:
    """The best MAX_RESULTS tools for `query`, best first; none when no word of it matches."""
    words = set(_WORDS.findall(query.lower()))
    scored = []
    for order, entry in enumerate(catalogue):
        name = entry.name.lower()
        description = entry.spec.description.lower()
        score = sum(3 * (word in name) + (word in description) for word in words)
        if score:
            scored.append((-score, order, entry))
    return [entry for _score, _order, entry in sorted(scored, key=lambda item: item[:2])[:MAX_RESULTS]]


def found_text(found: list[CatalogueEntry], query: str) -> str:
    if not found:
        return f"No tool matches {query[:200]!r}. Try other words, or answer without tools."
    lines = [f"{entry.name}: {entry.spec.description[:300]}" for entry in found]
    return "These tools are now callable:\n" + "\n".join(lines)


TOKENS = count_tools_tokens([dict(definition(0))]) + 10  # what search_tools itself costs in the context


def offered(catalogue: Catalogue, found: list[str], room: int) -> list[ChatCompletionToolParam]:
    """The tools a turn offers: all of them, or (room > 0: a large catalogue) search_tools and what it found."""
    if not room:
        return list(catalogue.tools)
    return [definition(len(catalogue)), *(catalogue.by_name[name].openai() for name in found)]


def run(catalogue: Catalogue, found: list[str], room: int, query: object) -> str:
    """One search_tools call: its matches join `found` (the turn's) while their definitions fit in `room` tokens;
    the text the model gets back."""
    text = query if isinstance(query, str) else ""
    used = count_tools_tokens([dict(catalogue.by_name[name].openai()) for name in found])
    matches = search(catalogue, text)
    for entry in matches:
        cost = count_tools_tokens([dict(entry.openai())])
        if entry.name not in found and used + cost <= room:
            found.append(entry.name)
            used += cost
    return found_text([entry for entry in matches if entry.name in found], text)
