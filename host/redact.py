"""Generic redaction of secrets in free text (failure reasons, a server's stderr, log fields), for any layer.

Masks URL userinfo and query strings, the values of key=/token=/password=/secret= style pairs and bearer or
basic credentials; also in text that was cut short. Linear in the text's length. Imports nothing from the host.
"""

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

MASK = "***"

# Each pattern starts only where a word starts and never backtracks over a word (possessive quantifiers),
# so that a long run of letters costs linear time.
_URL = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,30}+://[^\s\"'<>`]*+")
_AUTHORITY_END = re.compile(r"[/?#]")
_SECRET_WORDS = ("key", "token", "password", "passwd", "pwd", "secret", "credential", "auth")
# A word that names a secret (sslkey=, API_KEY: , "password": "...", x-auth-token=), its separator, its value.
_PAIR = re.compile(
    r"(?i)(?<![A-Za-z0-9_.-])(?=[A-Za-z0-9_.-]{0,60}?(?:" + "|".join(_SECRET_WORDS) + r"))"
    r"(?P<key>[A-Za-z0-9_.-]{1,64}+)(?P<separator>[\"']?\s{0,3}+[=:]\s{0,3}+[\"']?)(?!\*\*\*)"
    r"[^\s\"'&,;<>)}\]]++"
)
_CREDENTIAL = re.compile(r"(?i)(?<![A-Za-z0-9])(?P<scheme>bearer|basic)(?P<space>\s{1,3}+)[A-Za-z0-9._~+/=:-]++")


def redact(text: str) -> str:
    """`text` with every credential-looking part replaced by ***."""
    if "://" in text:
        text = _URL.sub(_url, text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _CREDENTIAL.sub(lambda match: f"{match['scheme']}{match['space']}{MASK}", text)
    for word in _SECRET_WORDS:  # a plain loop, not any(...): this runs on every string of every log line
        if word in lowered:
            return _PAIR.sub(lambda match: f"{match['key']}{match['separator']}{MASK}", text)
    return text


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with each of these known values (a configured key, a header value) replaced by ***."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_clipped(text: str, limit: int) -> str:
    """Redacted first, then cut to at most `limit` characters (with … when cut)."""
    text = redact(text)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def public_url(url: str) -> str:
    """scheme://host:port/path of a URL, fit to show: no user, password, query or fragment."""
    parts = urlsplit(url)
    if not parts.hostname:
        return redact(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _url(match: re.Match[str]) -> str:
    """scheme://***@host/path?***: userinfo and query masked; a URL cut inside its userinfo
    ("postgresql://bob:hunt") loses all of it, while a plain host:port stays."""
    url = match[0]
    start = url.index("://") + 3
    end = _AUTHORITY_END.search(url, start)
    split = end.start() if end else len(url)
    authority, rest = url[start:split], url[split:]
    if "@" in authority:
        authority = MASK + authority[authority.rindex("@") :]
    elif not rest and ":" in authority and not authority.startswith("[") and not authority.rpartition(":")[2].isdigit():
        authority = MASK
    query = rest.find("?")
    if query >= 0:
        fragment = rest.find("#", query)
        rest = rest[: query + 1] + MASK + (rest[fragment:] if fragment >= 0 else "")
    return url[:start] + authority + rest
