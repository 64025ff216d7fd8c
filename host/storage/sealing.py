"""Message content sealed at rest: AES-256-GCM with keys derived from SECRET_KEY (HKDF-SHA256), a key id in every
value so that keys rotate, and the column types that seal on write and open on read (Message.content, tool_calls).

A sealed value is text: `MARK` + `<key id>:` + base64url(nonce ‖ ciphertext ‖ tag), the column's name bound in as
associated data. Values written in clear (before SECRET_KEY, or without one) read as they are. A store's Sealer
rides on its engines' dialects (`attach`), so the columns find it without a global. A sealed column cannot be
searched or compared in SQL (each value has its own nonce). Imports host.errors only.
"""

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import JSON, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from host.errors import StorageError

MARK = "\x01s1:"  # a sealed value (format 1); U+0001 never starts a text a person or a model writes
CLEAR = "\x01c:"  # a clear value that itself starts with U+0001, escaped so that it never reads as sealed
_NONCE = 12
_ATTRIBUTE = "mcpbot_sealer"


def _derive(secret: str, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret.encode())


@dataclass(frozen=True, slots=True)
class _Key:
    id: str
    aead: AESGCM


def _key(secret: str) -> _Key:
    key_id = _derive(secret, b"mcpbot key id 1", 4).hex()  # names the key, reveals nothing of it
    return _Key(key_id, AESGCM(_derive(secret, b"mcpbot message content 1", 32)))


class Sealer:
    """Seals with the current key (none: values are written in clear) and opens with it or any previous one."""

    def __init__(self, current: str | None = None, previous: Iterable[str] = ()) -> None:
        self._current = _key(current) if current else None
        self._readers = [key for key in [self._current, *(_key(old) for old in previous if old)] if key is not None]

    @classmethod
    def from_settings(cls, secret_key: str | None, secret_key_previous: str | None) -> "Sealer":
        """SECRET_KEY and SECRET_KEY_PREVIOUS (old keys, comma-separated) as the settings hold them."""
        previous = [part.strip() for part in (secret_key_previous or "").split(",")]
        return cls(secret_key.strip() if secret_key else None, [part for part in previous if part])

    @property
    def seals(self) -> bool:
        """Whether new content is written sealed (SECRET_KEY is set)."""
        return self._current is not None

    @property
    def key_id(self) -> str | None:
        return self._current.id if self._current is not None else None

    def seal(self, text: str, column: str) -> str:
        if self._current is None:
            return CLEAR + text if text.startswith("\x01") else text
        nonce = os.urandom(_NONCE)
        sealed = self._current.aead.encrypt(nonce, text.encode(), column.encode())
        return f"{MARK}{self._current.id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, stored: str, column: str) -> str:
        """The text of a stored value; StorageError naming SECRET_KEY when no key held opens it."""
        if stored.startswith(CLEAR):
            return stored[len(CLEAR) :]
        if not stored.startswith(MARK):
            return stored  # written in clear
        key_id, _, body = stored[len(MARK) :].partition(":")
        candidates = [key for key in self._readers if key.id == key_id]
        if not candidates:
            held = ", ".join(key.id for key in self._readers) or "none"
            raise StorageError(
                f"stored message content was sealed with key {key_id}, which neither SECRET_KEY nor "
                f"SECRET_KEY_PREVIOUS holds (keys held: {held}); set the key it was written with"
            )
        try:
            raw = base64.urlsafe_b64decode(body)
        except ValueError:
            raw = b""
        for key in candidates:
            try:
                return key.aead.decrypt(raw[:_NONCE], raw[_NONCE:], column.encode()).decode()
            except (InvalidTag, ValueError):
                continue
        raise StorageError(
            f"stored message content sealed with key {key_id} failed its authentication check: the row was "
            "altered, or another SECRET_KEY has the same key id"
        )


def attach(dialect: Dialect, sealer: Sealer) -> None:
    """Give an engine's dialect (each engine has its own) the store's Sealer, for the sealed columns."""
    setattr(dialect, _ATTRIBUTE, sealer)


_IN_CLEAR = Sealer()


def sealer_of(dialect: Dialect) -> Sealer:
    sealer = getattr(dialect, _ATTRIBUTE, None)
    return sealer if isinstance(sealer, Sealer) else _IN_CLEAR


class SealedText(TypeDecorator[str]):
    """A Text column whose values are sealed (see the module's docstring); the column type stays TEXT."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else sealer_of(dialect).seal(value, "content")

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else sealer_of(dialect).open(value, "content")


class SealedJSON(TypeDecorator[Any]):
    """A JSON column whose value is stored as one JSON string holding the sealed JSON text; a value written in
    clear (any other JSON) reads as it is. The column type stays JSON."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        sealer = sealer_of(dialect)
        if value is None or not sealer.seals:
            return value
        return sealer.seal(json.dumps(value, ensure_ascii=False, separators=(",", ":")), "tool_calls")

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, str) and value.startswith(MARK):
            return json.loads(sealer_of(dialect).open(value, "tool_calls"))
        return value
