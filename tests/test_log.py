"""Secrets registered with host.log.hide, and credentials host.redact recognises, never appear in a log line,
whichever logger wrote it; Throttle keeps a flood to a line per interval."""

from host import log

LEAK = "postgresql://bob:hunter2@db/x?sslkey=abc token=xyz"


def test_a_hidden_secret_is_masked_in_every_field() -> None:
    token = "123456:SECRET-TOKEN-VALUE"
    log.hide(token)
    event = {"event": f"POST https://api.telegram.org/bot{token}/getUpdates", "count": 3, "error": f"bad {token}"}
    masked = log._redact(None, "warning", event)
    assert masked == {"event": "POST https://api.telegram.org/bot***/getUpdates", "count": 3, "error": "bad ***"}


def test_short_values_are_not_treated_as_secrets() -> None:
    log.hide("ab")
    assert log._redact(None, "info", {"event": "about"}) == {"event": "about"}


def test_every_log_field_is_redacted_nested_ones_and_tracebacks_too() -> None:
    event = {
        "event": "mcp_server_down",
        "reason": f"connection closed; stderr: {LEAK}",
        "servers": {"db": [LEAK]},
        "exception": f"Traceback ...\nValueError: {LEAK}",
        "count": 3,
    }
    masked = log._redact(None, "warning", event)
    assert "hunter2" not in repr(masked) and "xyz" not in repr(masked) and "sslkey=abc" not in repr(masked)
    assert masked["count"] == 3 and masked["reason"].startswith("connection closed; stderr: postgresql://***@db")


def test_a_throttle_writes_one_line_per_interval_and_counts_the_rest() -> None:
    now = [1000.0]
    throttle = log.Throttle(every=60, clock=lambda: now[0])
    admitted = [throttle.admit("wrong secret") for _ in range(200)]
    assert admitted[0] == 0 and admitted[1:] == [None] * 199
    assert throttle.admit("other reason") == 0  # each reason has its own line
    now[0] += 60
    assert throttle.admit("wrong secret") == 199
