"""Signed contexts and the cluster secret's upkeep, against fake replica links."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redquorum.protocol.resp import ReplyParser
from redquorum.replication.clock import BadContext, encode_context
from redquorum.replication.contexts import SECRET_KEY, TAG_BYTES, ContextSigner, SecretKeeper
from redquorum.replication.links import DOWN

clocks = st.dictionaries(st.binary(min_size=1, max_size=8), st.integers(1, 2**53 - 1), max_size=5)


def signer(secret: bytes = b"s" * 32) -> ContextSigner:
    s = ContextSigner()
    s.adopt(secret)
    return s


@given(clocks, st.binary(max_size=20))
def test_a_signed_context_verifies_for_its_key_only(clock, key):
    s = signer()
    data = s.sign(key, clock)
    assert s.verify(key, data) == clock
    if clock:
        assert len(data) == len(encode_context(clock)) + TAG_BYTES
        with pytest.raises(BadContext):
            s.verify(key + b"x", data)
        with pytest.raises(BadContext):
            signer(b"t" * 32).verify(key, data)


@given(clocks, st.integers(0, 200), st.integers(1, 255))
def test_any_changed_byte_is_refused(clock, where, flip):
    s = signer()
    data = bytearray(s.sign(b"k", clock) or b"\x01")
    data[where % len(data)] ^= flip
    with pytest.raises(BadContext):
        s.verify(b"k", bytes(data))


def test_secrets_learned_from_replicas_verify_too():
    mine, theirs = signer(b"a" * 32), signer(b"b" * 32)
    data = theirs.sign(b"k", {b"r1": 3})
    with pytest.raises(BadContext):
        mine.verify(b"k", data)
    mine.learn(b"b" * 32)
    assert mine.verify(b"k", data) == {b"r1": 3}
    assert mine.sign(b"k", {b"r1": 3}) != data  # it still signs with its own


class FakeReplica:
    """A link whose replies wait until ``deliver``; holds only the secret key."""

    def __init__(self, ident: str, secret: bytes | None = None) -> None:
        self.id = ident
        self.actor = ident.encode()
        self.up = True
        self.value = secret
        self.queued: list = []

    def request(self, payload, callback) -> None:
        if not self.up:
            callback(DOWN)
            return
        parser = ReplyParser()
        parser.feed(payload)
        self.queued.append((parser.gets(), callback))

    def deliver(self) -> None:
        queued, self.queued = self.queued, []
        for cmd, callback in queued:
            assert cmd[1] == SECRET_KEY
            if cmd[0] == b"GET":
                callback(self.value)
            elif self.value is None:  # SET NX
                self.value = cmd[2]
                callback(b"OK")
            else:
                callback(None)


def settle(links) -> None:
    while any(link.queued for link in links):
        for link in links:
            link.deliver()


def test_the_first_replica_holding_a_secret_decides_and_the_others_get_it():
    links = [FakeReplica("r1"), FakeReplica("r2", b"old"), FakeReplica("r3", b"other")]
    s = ContextSigner()
    SecretKeeper(s, links, lambda: b"fresh").refresh()
    settle(links)
    assert s.signing == b"old" and s.accepted == [b"old", b"other"]
    assert [link.value for link in links] == [b"old", b"old", b"other"]


def test_two_proxies_on_an_empty_cluster_agree():
    links = [FakeReplica("r1"), FakeReplica("r2"), FakeReplica("r3")]
    first, second = ContextSigner(), ContextSigner()
    SecretKeeper(first, links, lambda: b"one").refresh()
    SecretKeeper(second, links, lambda: b"two").refresh()
    settle(links)
    assert first.signing == second.signing == b"one"
    assert {link.value for link in links} == {b"one"}


def test_nothing_is_adopted_while_no_replica_answers():
    links = [FakeReplica("r1"), FakeReplica("r2")]
    for link in links:
        link.up = False
    s = ContextSigner()
    keeper = SecretKeeper(s, links, lambda: b"fresh")
    keeper.refresh()
    assert not s.ready
    links[1].up = True
    keeper.refresh()
    settle(links)
    assert s.signing == b"fresh" and links[1].value == b"fresh" and links[0].value is None


def test_a_configured_secret_never_touches_the_replicas():
    links = [FakeReplica("r1")]
    s = ContextSigner("a configured secret")
    SecretKeeper(s, links).refresh()
    assert not links[0].queued and s.signing == b"a configured secret"
