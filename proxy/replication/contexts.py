"""Signed client contexts, and the cluster secret they are signed with.

Theory of operation
-------------------
A context is an object's clock as RQ.GET or RQ.SET answered it; the client hands it back
with RQ.SET or RQ.DEL, and the coordinator joins it into the stored clock. Taken on
trust, a forged one could claim a counter near 2^53 (the key's counter could then never
grow again: every later write of it fails) or thousands of invented actors (kept in the
stored clock for good, slowing every later write). So a context is
``encode_context(clock)`` followed by a 16-byte tag, HMAC-SHA256 over the key and that
body under a secret every proxy of the cluster shares. A context whose tag does not
verify is refused; one that verifies carries a clock the cluster issued for that key, so
the stored clock never gains a counter or an actor no replica had.

The secret is ``[proxy] context_secret`` when configured (every proxy must then be given
the same one, and the replicas hold none). Otherwise the proxies keep it on the replicas
under ``__rq:secret`` (``SecretKeeper``): every second a proxy reads it from every
reachable replica. Until it has one, it adopts the secret of the first replica in
configuration order that holds one; when none does, it writes a fresh one with SET NX
everywhere and adopts what the next read finds (so two proxies starting at once agree).
It then writes its secret with SET NX to every replica that lacks it (one restarted
empty, or flushed). Secrets found on other replicas are accepted too (two proxies that
started at once, each reaching only part of the cluster, may have made one each): a
context signed by any proxy verifies on every other once both have read the replicas.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from ..protocol.resp import command
from .clock import BadContext, Clock, decode_context, encode_context
from .links import Link

SECRET_KEY = b"__rq:secret"
TAG_BYTES = 16
MAX_SECRETS = 16  # secrets accepted at once; only replicas add to them


def _tag(secret: bytes, key: bytes, body: bytes) -> bytes:
    mac = hmac.new(secret, b"%d:%b" % (len(key), key), hashlib.sha256)
    mac.update(body)
    return mac.digest()[:TAG_BYTES]


class ContextSigner:
    """Signs the contexts this proxy answers and verifies the ones clients send."""

    def __init__(self, configured: str | None = None) -> None:
        self.configured = bool(configured)
        self.signing: bytes | None = configured.encode() if configured else None
        self.accepted: list[bytes] = [self.signing] if self.signing else []

    @property
    def ready(self) -> bool:
        return self.signing is not None

    def sign(self, key: bytes, clock: Clock | Mapping[bytes, int]) -> bytes:
        body = encode_context(clock)
        if not body or self.signing is None:
            return b""
        return body + _tag(self.signing, key, body)

    def verify(self, key: bytes, data: bytes) -> dict[bytes, int]:
        """The clock a context of ``key`` carries; ``BadContext`` unless the cluster signed it."""
        if not data:
            return {}
        body, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        if not body or not any(hmac.compare_digest(_tag(s, key, body), tag) for s in self.accepted):
            raise BadContext("invalid context")
        return decode_context(body)

    def learn(self, secret: bytes) -> None:
        if secret and secret not in self.accepted and len(self.accepted) < MAX_SECRETS:
            self.accepted.append(secret)

    def adopt(self, secret: bytes) -> None:
        self.learn(secret)
        self.signing = secret


def _ignore(reply: Any) -> None:
    pass


class SecretKeeper:
    """Keeps the cluster secret on the replicas (the module docstring has the rules);
    ``refresh`` runs every second from the server's timer."""

    def __init__(self, signer: ContextSigner, links: Sequence[Link],
                 make_secret: Callable[[], bytes] = lambda: secrets.token_hex(32).encode()
                 ) -> None:
        self.signer = signer
        self.links = list(links)  # configuration order: the first holder's secret wins
        self.make_secret = make_secret
        self.busy = False

    def refresh(self) -> None:
        if self.signer.configured or self.busy:
            return
        links = [link for link in self.links if link.up]
        if not links:
            return
        self.busy = True
        replies: dict[str, Any] = {}
        payload = command(b"GET", SECRET_KEY)

        def got(link: Link, reply: Any) -> None:
            replies[link.id] = reply
            if len(replies) == len(links):
                self.busy = False
                self._decide(links, replies)

        for link in links:
            link.request(payload, partial(got, link))

    def _decide(self, links: list[Link], replies: dict[str, Any]) -> None:
        held = [replies[link.id] for link in links if type(replies[link.id]) is bytes]
        for secret in held:
            self.signer.learn(secret)
        signer = self.signer
        if signer.signing is None and held:
            signer.adopt(held[0])
        # a fresh secret is only proposed here; the next read adopts whichever one won
        secret = signer.signing or self.make_secret()
        lacking = [link for link in links if replies[link.id] is None]
        for link in lacking:
            link.request(command(b"SET", SECRET_KEY, secret, b"NX"), _ignore)
        if signer.signing is None and lacking:
            self.refresh()  # queued after the SETs on each link: it reads what they left
