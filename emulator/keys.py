"""The API keys the emulator accepts: its configured one, and keys a test adds and revokes
(a key rotation: add key 2, switch the client to it, revoke key 1).

Sakura's answer to a revoked key is the same 401 as to an unknown one. Calls are counted per
accepted access token (its ID, never the secret), so a test sees which key a client sent.
"""

from __future__ import annotations

import collections
import hmac
import threading


class Keys:
    """Added and revoked keys, beside the configured one (read at each request, so a test
    may still change `EmulatorConfig.access_token_secret` directly)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._added: dict[str, str] = {}
        self._revoked: set[str] = set()
        self.calls: collections.Counter[str] = collections.Counter()

    def add(self, access_token: str, access_token_secret: str) -> None:
        """Accept this key from now on (again, if it was revoked)."""
        if not access_token or not access_token_secret:
            raise ValueError("a key needs a non-empty access_token and access_token_secret")
        with self._lock:
            self._added[access_token] = access_token_secret
            self._revoked.discard(access_token)

    def revoke(self, access_token: str) -> None:
        """Refuse this access token from now on, the configured one included."""
        with self._lock:
            self._added.pop(access_token, None)
            self._revoked.add(access_token)

    def accepts(self, user: str, password: str, configured: tuple[str, str]) -> bool:
        with self._lock:
            if user in self._revoked:
                return False
            known = {configured[0]: configured[1], **self._added}
            expected = known.get(user)
            ok = expected is not None and hmac.compare_digest(password.encode(), expected.encode())
            if ok:
                self.calls[user] += 1
            return ok

    def stats(self, configured: str) -> dict[str, object]:
        """Access tokens (IDs only): accepted, revoked, and the calls each was accepted for."""
        with self._lock:
            accepted = [
                t for t in dict.fromkeys([configured, *self._added]) if t not in self._revoked
            ]
            return {
                "accepted": accepted,
                "revoked": sorted(self._revoked),
                "calls": dict(self.calls),
            }
