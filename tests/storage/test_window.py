"""fit_window on its own: the trim that keeps tool calls with their results, without a database."""

from host.storage.window import StoredMessage, fit_window


def m(
    role: str, content: str, tokens: int = 1, calls: list[str] | None = None, answers: str | None = None
) -> StoredMessage:
    tool_calls = [
        {"id": call, "type": "function", "function": {"name": "t", "arguments": "{}"}} for call in calls or []
    ]
    return StoredMessage(
        role=role,  # type: ignore[arg-type]
        content=content,
        tool_calls=tool_calls or None,
        tool_call_id=answers,
        token_count=tokens,
    )


def kept(chronological: list[StoredMessage], max_tokens: int = 1000) -> list[str | None]:
    return [message.content for message in fit_window(list(reversed(chronological)), max_tokens)]


def test_plain_messages_are_kept_newest_first_within_the_budget() -> None:
    history = [m("user", "a", 3), m("assistant", "b", 3), m("user", "c", 3)]
    assert kept(history) == ["a", "b", "c"]
    assert kept(history, max_tokens=6) == ["b", "c"]
    assert kept(history, max_tokens=2) == []


def test_a_window_never_starts_with_a_tool_result() -> None:
    history = [m("tool", "orphan", answers="x"), m("tool", "orphan 2", answers="y"), m("user", "next")]
    assert kept(history) == ["next"]


def test_a_group_too_big_for_the_budget_goes_whole_and_stops_the_window() -> None:
    history = [
        m("user", "old", 1),
        m("assistant", "call", 1, calls=["1", "2"]),
        m("tool", "r1", 5, answers="1"),
        m("tool", "r2", 5, answers="2"),
        m("user", "new", 1),
    ]
    assert kept(history, max_tokens=12) == ["call", "r1", "r2", "new"]
    assert kept(history, max_tokens=11) == ["new"]  # "old" would fit, but the window stays contiguous


def test_results_in_any_order_complete_the_group_and_strays_are_dropped() -> None:
    history = [
        m("assistant", "call", calls=["1", "2"]),
        m("tool", "r2", answers="2"),
        m("tool", "r1", answers="1"),
        m("tool", "again", answers="1"),
        m("tool", "unknown", answers="9"),
        m("assistant", "done"),
    ]
    assert kept(history) == ["call", "r2", "r1", "done"]


def test_a_call_missing_a_result_is_dropped_even_at_the_newest_end() -> None:
    history = [m("user", "q"), m("assistant", "call", calls=["1", "2"]), m("tool", "r1", answers="1")]
    assert kept(history) == ["q"]


def test_an_assistant_without_tool_calls_is_an_ordinary_message() -> None:
    history = [m("system", "s"), m("assistant", "hello"), m("user", "hi")]
    assert kept(history) == ["s", "hello", "hi"]
