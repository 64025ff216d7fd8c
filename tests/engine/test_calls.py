"""A tool result is cut once, to the smaller of its share of the context and the operator's character cap, with one
note the model can read; the calls of a step are resolved against the limits."""

from host.engine.calls import CallLimits, fit, resolve
from host.engine.llm import Completion, ToolCall
from host.tokens import count_tokens


def test_a_result_that_fits_is_unchanged() -> None:
    assert fit("all of it", max_tokens=100, max_chars=100) == "all of it"


def test_the_character_cap_cuts_with_one_note() -> None:
    cut = fit("y" * 500, max_tokens=10_000, max_chars=100)
    assert cut == "y" * 100 + "\n[truncated to fit the context: showing 100 of 500 characters]"


def test_the_token_share_cuts_when_it_is_smaller() -> None:
    text = "word " * 2_000
    cut = fit(text, max_tokens=200, max_chars=100_000)
    kept = cut.split("\n[truncated")[0]
    assert count_tokens(kept) <= 200 and cut.count("[truncated") == 1 and f"of {len(text)} characters]" in cut


def test_calls_over_the_step_limit_are_refused_unseen_and_ids_made_unique() -> None:
    calls_asked = tuple(ToolCall(id="same", name="t", arguments="{}") for _ in range(3))
    completion = Completion(text="", reasoning="", tool_calls=calls_asked, usage=None, finish_reason="tool_calls")
    calls = resolve(completion, {}, CallLimits(per_step=2, per_turn=10, argument_bytes=100), used=0, chat_id=1)
    assert [c.refusal is None for c in calls] == [True, True, False]
    assert not calls[2].shown and "at most 2 run in one step" in (calls[2].refusal or "")
    assert len({c.call.id for c in calls}) == 3 and calls[0].call.id == "same"
