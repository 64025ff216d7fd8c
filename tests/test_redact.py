"""Credentials in free text are masked wherever they would reach a log line or an admin: whole or cut short."""

import time

import pytest

from host.redact import redact, redact_clipped

LEAK = "postgresql://bob:hunter2@db/x?sslkey=abc token=xyz"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (LEAK, "postgresql://***@db/x?*** token=***"),
        ("redis://:pw@localhost:6379/0", "redis://***@localhost:6379/0"),
        ("GET https://h/cb?code=1&state=2#top failed", "GET https://h/cb?***#top failed"),
        ("export API_KEY=sk-123 SSLKEY=k2", "export API_KEY=*** SSLKEY=***"),
        ('{"password": "p1", "client_secret":"s2"}', '{"password": "***", "client_secret":"***"}'),
        ("Authorization: Bearer abc.def-1", "Authorization: *** ***"),
        ("sent basic dXNlcjpwYXNz to the proxy", "sent basic *** to the proxy"),
    ],
)
def test_credentials_are_masked(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "HTTP 502 from http://127.0.0.1:9999/mcp",
        "cannot reach http://127.0.0.1:9999",
        "TELEGRAM_BOT_TOKEN was rejected by api.telegram.org: check the token from @BotFather",
        "server 'files' is not connected (exited with status 3); retrying in 1.0 s",
    ],
)
def test_ordinary_failure_texts_are_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("cut", "secret"),
    [
        ("stderr: postgresql://bob:hunt", "hunt"),
        ("stderr: postgresql://bob:hunt | next line", "hunt"),
        ("retrying with password=abc...", "abc"),
        ("GET https://h/cb?token=ab", "ab"),
    ],
)
def test_text_cut_inside_a_credential_is_still_masked(cut: str, secret: str) -> None:
    assert secret not in redact(cut)


def test_redacting_before_clipping_masks_what_the_cut_would_have_split() -> None:
    clipped = redact_clipped("failed: password=abcdefghijkl and more", 24)
    assert clipped == "failed: password=*** an…" and "abc" not in clipped


def test_redaction_takes_linear_time_on_hostile_text() -> None:
    started = time.process_time()
    for text in ("a" * 1_000_000, "key" * 300_000, "http://" * 150_000, "a=b " * 250_000, "Bearer " * 150_000):
        redact(text)
    assert time.process_time() - started < 10  # quadratic patterns take minutes here
