"""Secrets registered with host.log.hide never appear in a log line, whichever logger wrote it."""

from host import log


def test_a_hidden_secret_is_masked_in_every_field() -> None:
    token = "123456:SECRET-TOKEN-VALUE"
    log.hide(token)
    event = {"event": f"POST https://api.telegram.org/bot{token}/getUpdates", "count": 3, "error": f"bad {token}"}
    masked = log._redact(None, "warning", event)
    assert masked == {"event": "POST https://api.telegram.org/bot***/getUpdates", "count": 3, "error": "bad ***"}


def test_short_values_are_not_treated_as_secrets() -> None:
    log.hide("ab")
    assert log._redact(None, "info", {"event": "about"}) == {"event": "about"}
