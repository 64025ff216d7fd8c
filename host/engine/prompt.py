"""The system prompt: the operator's text, today's date, and the connected MCP servers' own instructions.

This is what the seed design calls gathering MCP context. Pure; imports nothing from the host.
"""

from collections.abc import Mapping
from datetime import datetime

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a Telegram chat. Answer concisely and in the language the user writes in. "
    "Use the tools you are given when they help; say so when a tool fails instead of guessing its result."
)
MAX_INSTRUCTIONS_PER_SERVER = 2_000
MAX_INSTRUCTIONS_TOTAL = 6_000


def system_prompt(base: str, now: datetime, instructions: Mapping[str, str]) -> str:
    """`base`, the date, then each server's instructions, each capped, all together capped."""
    # The date only, not the time: a prompt that changes every minute would defeat the servers' prompt caches.
    parts = [base.strip(), f"Today is {now:%A, %d %B %Y} (UTC)."]
    budget = MAX_INSTRUCTIONS_TOTAL
    sections = []
    for server, text in instructions.items():
        text = text.strip()
        if len(text) > MAX_INSTRUCTIONS_PER_SERVER:
            text = text[:MAX_INSTRUCTIONS_PER_SERVER] + " [...]"
        section = f"## {server}\n{text}"
        if len(section) > budget:
            break
        budget -= len(section)
        sections.append(section)
    if sections:
        parts.append("Notes from the tool servers you can use:\n\n" + "\n\n".join(sections))
    return "\n\n".join(parts)
