"""The one retry backoff that MCP reconnects, Bot API outages and model retries wait by."""

from host.backoff import backoff


def test_the_wait_doubles_from_the_first_up_to_the_cap() -> None:
    assert [backoff(failures, 0.5, 30.0) for failures in range(9)] == [0.0, 0.5, 1, 2, 4, 8, 16, 30, 30]


def test_a_long_outage_waits_the_cap_instead_of_overflowing() -> None:
    assert backoff(10_000, 0.5, 30.0) == 30.0
    assert backoff(10_000, 0.5) > 1e18  # no cap: still a number
