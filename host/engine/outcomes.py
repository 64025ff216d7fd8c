"""How a turn ends besides an answer: the note for a message that cannot fit the context, the note for an empty
answer, and the one `turn_finished` log line every turn ends with."""

import structlog

from host.engine.events import TurnFinished
from host.engine.llm import Completion, Usage
from host.storage.window import StoredMessage

log = structlog.get_logger("host.engine")


def turn_summary(
    outcome: str,
    *,
    chat_id: int,
    user_id: int | None,
    steps: int,
    tool_calls: int,
    seconds: float,
    usage: Usage | None = None,
    error: str | None = None,
) -> None:
    """The one line every turn ends with (a repeated delivery has none): answered, refused (it cannot fit the
    context), failed (`error` names the exception), cancelled (the bot stops) or stopped (the consumer closed it);
    never the texts."""
    log.info(
        "turn_finished",
        outcome=outcome,
        chat_id=chat_id,
        **({} if user_id is None else {"user_id": user_id}),  # else the front end's bound user_id, if any
        steps=steps,
        tool_calls=tool_calls,
        seconds=round(seconds, 3),
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        **({"error": error} if error else {}),
    )


def refusal(chat_id: int, user: StoredMessage, budget: int) -> TurnFinished:
    """A message that cannot fit the context is not stored and not sent: the turn is a note saying so."""
    if budget <= 0:
        log.error(
            "context_too_small",
            chat_id=chat_id,
            budget=budget,
            hint="the system prompt, the tools and LLM_MAX_TOKENS fill LLM_MAX_CONTEXT_TOKENS",
        )
        text = "⚠️ My instructions and tools fill my whole context, so I cannot read messages now. It is logged."
    else:
        log.warning("message_too_long", chat_id=chat_id, budget=budget, message_tokens=user.token_count)
        text = (
            f"⚠️ Your message is too long for me: about {user.token_count:,} tokens, and at most {budget:,} fit."
            " Please send it shorter or in parts."
        )
    return TurnFinished(text=text, usage=Usage(0, 0), tool_calls=0, refused=True)


def empty_answer_note(completion: Completion, after_step_limit: bool) -> str:
    if after_step_limit:
        return "I could not finish this within the allowed number of tool steps. Please ask in smaller parts."
    if completion.cut_at is not None:
        return "The model's answer was too large to read (LLM_MAX_RESPONSE_BYTES). Please try again."
    if completion.finish_reason == "length":
        return "The model used up its answer length (LLM_MAX_TOKENS) before answering. Please try again."
    return "The model gave an empty answer. Please try again or rephrase."
