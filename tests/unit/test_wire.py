"""The replica wire format: each named operation travels as the arguments its OPS entry
in replicas/redquorum.lua takes, and each payload is a well-formed RESP command."""

from __future__ import annotations

import zlib

import pytest
from redquorum.protocol.resp import parse_typed
from redquorum.replication import wire


def decoded(payload: bytes) -> list[bytes]:
    value, end = parse_typed(payload, 0)
    assert end == len(payload)
    return value


PAYLOADS = wire.Payloads(mode="causal", grace_ms=3_600_000, hard_limit=100, actors=[b"r1"])


def test_a_plain_set_is_the_compact_rq_set():
    op = wire.set_value(b"v", expire_at=1234)
    args = decoded(PAYLOADS.put(b"k", b"r1", b"*", op))
    assert args[:4] == [b"FCALL", b"rq_set", b"1", b"k"]
    assert args[4] == b"r1" and args[6:] == [b"3600000", b"100", b"v", b"1234"]
    assert op.blind == (b"0", b"1234", b"v")


def test_set_options_go_through_rq_put_in_the_order_ops_set_takes_them():
    op = wire.set_value(b"v", keep_ttl=True, condition=b"NX", get_old=True)
    assert op.plain is None and op.blind is None  # read-modify-write: a quorum read first
    args = decoded(PAYLOADS.put(b"k", b"r1", b"", op))
    assert args[:4] == [b"FCALL", b"rq_put", b"1", b"k"]
    assert args[6:] == [b"", b"3600000", b"100", b"set", b"v", b"keep", b"0", b"NX", b"1"]


def test_synced_objects_come_before_the_put_arguments():
    op = wire.incr_by(-5)
    args = decoded(PAYLOADS.put(b"k", b"r1", b"*", op, synced=[b"o1", b"o2"]))
    assert args[:7] == [b"FCALL", b"rq_put_synced", b"1", b"k", b"2", b"o1", b"o2"]
    assert args[7] == b"r1" and args[-2:] == [b"incrby", b"-5"]


def test_operations_name_their_arguments():
    assert wire.delete().blind == (b"1", b"0", b"")
    assert wire.client_set(b"v", 0) == wire.Op(b"rqset", (b"v", b"0"), None, (b"0", b"0", b"v"))
    assert wire.get_and_expire(None).args == (b"persist", b"0", b"")
    assert wire.get_and_expire(99, b"ERR bad").args == (b"at", b"99", b"ERR bad")
    assert wire.expire(5, {b"XX", b"GT"}).args == (b"at", b"5", b"GT,XX")
    assert wire.persist().args == (b"persist", b"0", b"")
    assert wire.set_bit(7, True).args == (b"7", b"1")
    assert wire.compare_and_set(b"").args == (b"peek", b"", b"0", b"")
    assert wire.compare_and_set(b"v", expect_none=True).args == (b"none", b"", b"0", b"v")
    assert wire.compare_and_set(b"v", expect_dot=(b"r1~ab", b"3")).args == (b"dot", b"r1~ab", b"3", b"v")


def test_fan_out_merge_and_hint_payloads():
    assert decoded(PAYLOADS.replace(b"k", b"new", b"", 0)) == [
        b"FCALL", b"rq_replace", b"1", b"k", b"3600000", b"new", b"", b"0"]
    assert decoded(PAYLOADS.merge(b"k", b"o")) == [b"FCALL", b"rq_merge", b"1", b"k", b"3600000", b"o"]
    assert decoded(PAYLOADS.merge(b"k", b"a", b"b"))[-2:] == [b"a", b"b"]
    lww = wire.Payloads(mode="lww", grace_ms=1, hard_limit=1, actors=[])
    assert decoded(lww.merge(b"k", b"o"))[1] == b"rq_merge_lww"
    assert decoded(lww.replace(b"k", b"n", b"o", 5))[1] == b"rq_replace_lww"
    assert decoded(wire.hint("r3", b"k", b"o")) == [
        b"FCALL", b"rq_hint", b"2", b"__rq:hints:r3", b"__rq:hint-times:r3", b"k", b"o"]
    assert decoded(wire.hint_done("r3", b"k", b"o")) == [
        b"FCALL", b"rq_hint_done", b"2", b"__rq:hints:r3", b"__rq:hint-times:r3", b"k", b"o"]
    assert decoded(wire.hint_done("r3", b"k", b"o", copy=b"c", others=["r4"])) == [
        b"FCALL", b"rq_hint_done", b"4", b"__rq:hints:r3", b"__rq:hint-times:r3", b"k",
        b"__rq:hints:r4", b"k", b"o", b"c"]


def test_a_fallback_payload_is_the_same_call_inside_rq_fallback():
    key = b"user:\r\n42"
    for payload in (PAYLOADS.replace(key, b"new", b"", 0), PAYLOADS.merge(key, b"o"),
                    PAYLOADS.merge(key, b"a", b"b"),
                    PAYLOADS.put(key, b"r1", b"*", wire.set_value(b"v")),
                    PAYLOADS.put(key, b"r1", b"*", wire.append(b"v"), synced=[b"x"]),
                    PAYLOADS.lww(key, b"r1", (b"0", b"0", b"v"))):
        inner = decoded(payload)
        assert decoded(wire.as_fallback(payload, key, "r3")) == [
            b"FCALL", b"rq_fallback", b"3", key, b"__rq:hints:r3", b"__rq:hint-times:r3",
            inner[1], *inner[4:]]
    with pytest.raises(ValueError):
        wire.as_fallback(PAYLOADS.merge(b"other", b"o"), key, "r3")


def entry_of(call: wire.Call) -> list[bytes]:
    return decoded(b"*%d\r\n%b" % (call.width, call.entry))


def test_write_calls_carry_their_rq_many_entry():
    lww = wire.Payloads(mode="lww", grace_ms=1, hard_limit=1, actors=[])
    calls = [PAYLOADS.put(b"k", b"r1", b"*", wire.set_value(b"v")),
             PAYLOADS.put(b"key:2", b"r1", b"", wire.set_value(b"v", condition=b"NX")),
             PAYLOADS.put(b"k3", b"r1", b"*", wire.incr_by(2), synced=[b"o1", b"o2"]),
             PAYLOADS.replace(b"k4", b"new", b"old", 7), PAYLOADS.merge(b"k5", b"o"),
             PAYLOADS.merge(b"k6", b"a", b"b"), lww.lww(b"k7", b"p", (b"0", b"0", b"v")),
             lww.put(b"k8", b"p", b"*", wire.append(b"x"), synced=[])]
    for call in calls:
        assert type(call) is wire.Call
        args = decoded(call)  # on its own, the plain FCALL
        assert args[0] == b"FCALL" and args[2] == b"1"
        entry = entry_of(call)
        assert entry[0] == b"%d" % (len(args) - 1) and call.width == len(args) + 1
        assert int(entry[1]) == zlib.crc32(args[3])  # the key's ring partition hash
        assert entry[2:] == args[1:]
    batch = decoded(wire.many([c.entry for c in calls], sum(c.width for c in calls)))
    assert batch[:3] == [b"FCALL", b"rq_many", b"0"]
    assert batch[3:] == [arg for call in calls for arg in entry_of(call)]


def test_calls_that_are_not_writes_stay_plain_bytes():
    assert type(PAYLOADS.inspect(b"k")) is bytes
    assert type(wire.hint("r3", b"k", b"o")) is bytes
    assert type(wire.hint_done("r3", b"k", b"o")) is bytes
    # a fallback's call leaves alone: it is rare (homes down) and carries two more keys
    assert type(wire.as_fallback(PAYLOADS.merge(b"k", b"o"), b"k", "r3")) is bytes
