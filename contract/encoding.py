"""How a value stored as text becomes the bytes of a file: base64, written once for both halves.

Sakura stores text (at most 64 KiB), so a Java keystore, a PKCS#12 bundle or a DER certificate
is stored base64-encoded; `encoding-FILE: base64` has the init container write the decoded bytes,
and the templates' `b64decode` filter decodes a value that is text underneath. Every error here
is ours and names no part of the value, so the init container may show it as it is.
"""

from __future__ import annotations

import base64
import re

BASE64 = "base64"
"""The one encoding `encoding-FILE` names: RFC 4648 base64 with its `+/` alphabet and padding."""
_WHITESPACE = re.compile(r"[ \t\r\n]+")


class EncodingError(ValueError):
    """A value is not in the encoding asked for; the message names the rule, never the value."""


def decode_base64(text: str) -> bytes:
    """The bytes `text` encodes; line breaks and spaces (as `base64` wraps its output) are fine.

    Strict otherwise: a character outside the alphabet, missing or surplus padding is an error,
    not a silently different file.
    """
    compact = _WHITESPACE.sub("", text)
    try:
        data = base64.b64decode(compact)  # a character outside ASCII raises ValueError
    except ValueError:  # binascii.Error too; its text can count the value's characters
        data = None
    # outside the alphabet (b64decode drops such characters) or surplus '=': not the same text
    if data is None or base64.b64encode(data).decode() != compact:
        raise EncodingError(
            "not valid base64 (only A-Z, a-z, 0-9, '+', '/' and '=' padding, the length a "
            "multiple of 4)"
        )
    return data


def decode_base64_text(text: str) -> str:
    """The UTF-8 text `text` encodes: what a template, which makes text, can hold."""
    data = decode_base64(text)
    try:
        return data.decode()  # UTF-8, strict
    except UnicodeDecodeError:
        raise EncodingError(
            "the decoded bytes are not UTF-8 text, which a template cannot hold; write a binary "
            "value with secret-FILE and encoding-FILE: base64 instead"
        ) from None


def encode_base64(text: str) -> str:
    """`text`'s UTF-8 bytes in base64, on one line."""
    return base64.b64encode(text.encode()).decode()
