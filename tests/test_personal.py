"""E-mail addresses, phone numbers and card numbers never reach a log line; ids, timestamps and versions stay."""

import subprocess
import sys

import pytest

from host import log
from host.personal import mask_personal
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("sent to anna.berg+bot@example.co.uk today", "sent to *** today"),
        ("call +49 30 1234 5678 or +1 (555) 010-9999", "call *** or ***"),
        ("office (030) 1234 5678, ext. 9", "office ***, ext. 9"),
        ("card 4111 1111 1111 1111 exp 12/29", "card *** exp 12/29"),
        ("card 5500-0000-0000-0004", "card ***"),
        ("pan=378282246310005;", "pan=***;"),
    ],
)
def test_personal_data_is_masked(text: str, shown: str) -> None:
    assert mask_personal(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-04T02:03:25.633997Z took 1733277805.123 s",
        "chat -1001234567890 update 987654321 message 12345",
        "order 1234567890123 (not a valid card number: it fails the Luhn check)",
        "mcp 2.3.0 at 127.0.0.1:5432, python 3.11.7 (SQLSTATE 53400)",
        "user@ is not an address, nor is @mention",
    ],
)
def test_what_only_looks_similar_stays(text: str) -> None:
    assert mask_personal(text) == text


def test_hostile_input_of_a_megabyte_is_read_in_one_pass() -> None:
    """Runs in a subprocess so that a pattern gone quadratic fails at the bound instead of hanging the suite."""
    script = (
        "from host.personal import mask_personal\n"
        "for hostile in ('+1' * 500_000, '(12) ' * 200_000, '1 ' * 500_000, 'a@' * 500_000, '4' * 1_000_000):\n"
        "    assert mask_personal(hostile) == hostile, hostile[:20]\n"
        "print('read')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout == "read\n", done.stderr


def test_every_log_line_is_masked() -> None:
    event = {"event": "reply_not_delivered", "error": "user anna@example.org (+49 170 1234567) refused"}
    assert log._redact(None, "warning", event)["error"] == "user *** (***) refused"
