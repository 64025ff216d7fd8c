"""Personal data masked in log lines: e-mail addresses, phone numbers and card numbers, wherever a library or an
error message puts them. A leaf, like host.redact (which masks credentials); host.log applies both to every line.
Linear in the text's length: every pattern is bounded and does not backtrack over a run.

What counts: an e-mail address (local@domain.tld); a phone number written internationally (+ and 8 to 15 digits,
with spaces, dots, dashes or one pair of brackets between them) or with a bracketed area code ("(030) 1234 5678");
a card number (13 to 19 digits, alone or in groups of spaces or dashes, that pass the Luhn check, so that ids
and timestamps stay readable).
"""

import re

MASK = "***"

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}+@[A-Za-z0-9-]{1,63}+(?:\.[A-Za-z0-9-]{1,63}+){1,8}+")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d(?:[ .()-]{0,2}+\d){7,14}+"  # +49 30 1234 5678, +1 (555) 010-9999
    r"|\(\d{2,5}\)[ .-]?\d{2,5}(?:[ .-]?\d{2,5}){1,3}+)(?!\d)"  # (030) 1234 5678
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")


def mask_personal(text: str) -> str:
    """`text` with e-mail addresses, phone numbers and card numbers replaced by ***."""
    if "@" in text:
        text = _EMAIL.sub(MASK, text)
    if "+" in text or "(" in text:
        text = _PHONE.sub(MASK, text)
    return _CARD.sub(_card, text)


def _card(match: re.Match[str]) -> str:
    digits = [int(character) for character in match[0] if character.isdigit()]
    return MASK if _luhn(digits) else match[0]


def _luhn(digits: list[int]) -> bool:
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0
