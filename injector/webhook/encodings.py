"""`encoding-FILE` annotations -> which files get their secret's value decoded (binary files).

Only a `secret-FILE` value can be decoded: a template writes text, and decodes inside itself
with `| b64decode`. The value itself is never seen here; the init container decodes it and
fails naming the secret when it is not valid base64.
"""

from __future__ import annotations

from collections.abc import Mapping

from contract.annotations import ENCODING_OF, SECRET_FILE, TEMPLATE_FILE, short_name
from contract.encoding import BASE64
from injector.webhook.errors import Denied


def encodings(ours: Mapping[str, str], sources: Mapping[str, str]) -> dict[str, str]:
    """FILE -> its encoding, for each `encoding-FILE`; `sources` maps FILE -> its key."""
    found: dict[str, str] = {}
    for key in sorted(k for k in ours if k.startswith(ENCODING_OF)):
        file = key[len(ENCODING_OF) :]
        source = sources.get(file)
        if source is None:
            raise Denied(
                f"annotation {key} decodes the file {short_name(SECRET_FILE)}{file} would write, "
                f"but no {short_name(SECRET_FILE)}FILE annotation writes {file!r}; "
                f"files: {', '.join(sorted(sources))}"
            )
        if source.startswith(TEMPLATE_FILE):
            raise Denied(
                f"annotation {key}: file {file!r} is written by {source}, and a template writes "
                f'text; decode inside it with {{{{ secret("NAME") | b64decode }}}} (text only), '
                f"or write the binary value with {SECRET_FILE}{file}"
            )
        value = ours[key].strip().lower()
        if value != BASE64:
            raise Denied(
                f"annotation {key}: {ours[key]!r} is not an encoding; write {BASE64} (the "
                "secret's value is then decoded into the file)"
            )
        found[file] = value
    return found
