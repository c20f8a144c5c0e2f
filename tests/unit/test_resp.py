"""proxy/resp.py: the client request parser and the reply encoder.

The parser is checked h11-style (every input whole, one byte at a time, in random
splits, with trailing garbage) and against Redis's own behaviour: the inline splitting
rules of ``sdssplitargs`` and the exact protocol-error texts were taken from a real
redis-server 7.0. The encoder is checked byte-exactly for every value type and by
round-tripping random values through hiredis's reader in RESP2 and RESP3.
"""

from __future__ import annotations

import math
import tracemalloc

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redquorum.protocol.resp import (
    MAX_BULK,
    MAX_INLINE,
    MAX_MULTIBULK,
    NIL,
    OK,
    PONG,
    NullArray,
    ProtocolError,
    Push,
    ReplyError,
    RequestParser,
    Simple,
    Verbatim,
    encode,
    encode_command,
    split_inline,
)

# ---------------------------------------------------------------------------
# helpers


def drain(parser: RequestParser) -> list[list[bytes]]:
    """Every complete command the parser holds now."""
    out = []
    while (command := parser.next_command()) is not None:
        out.append(command)
    return out


def parse_chunks(chunks: list[bytes]) -> list[list[bytes]]:
    parser = RequestParser()
    out: list[list[bytes]] = []
    for chunk in chunks:
        parser.feed(chunk)
        out += drain(parser)
    assert parser.buffered() == 0
    return out


def parse_all(data: bytes) -> list[list[bytes]]:
    return parse_chunks([data])


def error_of(data: bytes) -> str:
    """The ProtocolError text the parser raises for ``data`` (fed whole)."""
    parser = RequestParser()
    parser.feed(data)
    with pytest.raises(ProtocolError) as info:
        drain(parser)
    return str(info.value)


def multibulk(*args: bytes) -> bytes:
    return b"".join([b"*%d\r\n" % len(args)] + [b"$%d\r\n%b\r\n" % (len(a), a) for a in args])


def sds_repr(arg: bytes) -> bytes:
    """Redis's ``sdscatrepr``: the quoted form redis-cli prints and sdssplitargs reads."""
    out = bytearray(b'"')
    for c in arg:
        if c in b'\\"':
            out += b"\\" + bytes([c])
        elif c in b"\n\r\t\a\b":
            out += {10: b"\\n", 13: b"\\r", 9: b"\\t", 7: b"\\a", 8: b"\\b"}[c]
        elif 32 <= c < 127:
            out.append(c)
        else:
            out += b"\\x%02x" % c
    out += b'"'
    return bytes(out)


# ---------------------------------------------------------------------------
# strategies

binary_args = st.lists(st.binary(max_size=40), min_size=1, max_size=5)
# bytes that need no quoting in an inline command (and never start a multibulk)
bare_token = st.binary(min_size=1, max_size=12).filter(
    lambda b: not any(c in b" \t\n\r\v\f\0\"'*" for c in b))


@st.composite
def request_stream(draw) -> tuple[bytes, list[list[bytes]]]:
    """A pipeline of multibulk, inline and empty commands, and what it must parse to."""
    data = bytearray()
    expected: list[list[bytes]] = []
    for kind in draw(st.lists(st.sampled_from(["multibulk", "inline", "quoted", "empty"]),
                              min_size=1, max_size=8)):
        if kind == "multibulk":
            args = draw(binary_args)
            data += multibulk(*args)
        elif kind == "inline":
            args = draw(st.lists(bare_token, min_size=1, max_size=4))
            sep = draw(st.sampled_from([b" ", b"\t", b"  "]))
            data += b" " * draw(st.integers(0, 2)) + sep.join(args)
            data += draw(st.sampled_from([b"\r\n", b"\n", b" \r\n"]))
        elif kind == "quoted":
            args = draw(st.lists(st.binary(max_size=12), min_size=1, max_size=4))
            data += b"CMD " + b" ".join(sds_repr(a) for a in args) + b"\r\n"
            args = [b"CMD"] + args
        else:
            args = []
            data += draw(st.sampled_from([b"\r\n", b"\n", b"   \r\n", b"*0\r\n", b"*-1\r\n"]))
        expected.append(args)
    return bytes(data), expected


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)], strict=True)]


# ---------------------------------------------------------------------------
# the request parser: same commands however the bytes arrive


@given(request_stream())
def test_whole_and_byte_by_byte_give_the_same_commands(stream):
    data, expected = stream
    assert parse_all(data) == expected
    assert parse_chunks([data[i:i + 1] for i in range(len(data))]) == expected


@given(request_stream(), st.lists(st.integers(min_value=0), max_size=12))
def test_random_splits_give_the_same_commands(stream, cuts):
    data, expected = stream
    assert parse_chunks(splits(data, cuts)) == expected


@settings(max_examples=20)
@given(st.integers(1, 40), st.lists(st.integers(min_value=0), max_size=30))
def test_long_pipelines_survive_buffer_compaction(count, cuts):
    # more than 64 KiB consumed: feed() compacts the buffer between commands
    value = b"v" * 5000
    data = b"".join(multibulk(b"SET", b"key%d" % i, value) for i in range(count)) * 2
    expected = [[b"SET", b"key%d" % i, value] for i in range(count)] * 2
    assert parse_chunks(splits(data, cuts)) == expected


def test_partial_input_waits_without_error():
    data = multibulk(b"SET", b"key", b"value") + b"PING\r\n"
    for end in range(len(data)):
        parser = RequestParser()
        parser.feed(data[:end])
        commands = drain(parser)
        assert commands in ([], [[b"SET", b"key", b"value"]])


def test_binary_safe_bulks():
    weird = bytes(range(256))
    assert parse_all(multibulk(b"SET", b"\r\n", weird, b"")) == [[b"SET", b"\r\n", weird, b""]]


def test_encode_command_is_what_the_parser_reads():
    assert parse_all(encode_command("SET", b"k", 12, "é")) == [[b"SET", b"k", b"12", "é".encode()]]


# ---------------------------------------------------------------------------
# inline commands: Redis's sdssplitargs


@pytest.mark.parametrize(("line", "args"), [
    # each expectation checked against redis-server 7.0 (ECHO/SET over a raw socket)
    (b"PING", [b"PING"]),
    (b"  SET   k \t v  ", [b"SET", b"k", b"v"]),
    (b'ECHO "a b"', [b"ECHO", b"a b"]),
    (b"ECHO 'a b'", [b"ECHO", b"a b"]),
    (b'ECHO "a\\x41"', [b"ECHO", b"aA"]),
    (b'ECHO "\\x4g"', [b"ECHO", b"x4g"]),  # not a hex escape: backslash-escaped 'x'
    (b'ECHO "\\xff\\x00"', [b"ECHO", b"\xff\x00"]),
    (b'ECHO "\\n\\r\\t\\b\\a\\\\\\"\\q"', [b"ECHO", b'\n\r\t\b\a\\"q']),
    (b"ECHO 'a\\'b'", [b"ECHO", b"a'b"]),
    (b"ECHO 'ab\\n'", [b"ECHO", b"ab\\n"]),  # no escapes in single quotes but \'
    (b"ECHO 'a\"b'", [b"ECHO", b'a"b']),
    (b'ECHO "a\'b"', [b"ECHO", b"a'b"]),
    (b'ECHO a"b c"', [b"ECHO", b"ab c"]),  # a quote opens mid-token
    (b'ECHO ""', [b"ECHO", b""]),
    (b"ECHO ''", [b"ECHO", b""]),
    (b'ECHO "a" "b"', [b"ECHO", b"a", b"b"]),
    (b"", []),
    (b"   ", []),
])
def test_inline_splitting_like_sdssplitargs(line, args):
    assert split_inline(line) == args
    assert parse_all(line + b"\r\n") == [args]
    assert parse_all(line + b"\n") == [args]


@pytest.mark.parametrize("line", [
    b'ECHO "ab', b"ECHO 'ab", b'ECHO "a"b', b"ECHO 'a'b", b'ECHO "', b'ECHO "a\\"',
])
def test_unbalanced_quotes(line):
    assert error_of(line + b"\r\n") == "Protocol error: unbalanced quotes in request"


def test_vertical_tab_and_form_feed_inside_a_bare_token_like_redis():
    assert split_inline(b"ECHO a\vb") == [b"ECHO", b"a\vb"]
    assert split_inline(b"ECHO a\fb") == [b"ECHO", b"a\fb"]


def test_leading_vertical_tabs_are_blanks():
    assert split_inline(b"ECHO \v\fab") == [b"ECHO", b"ab"]


@given(st.lists(st.binary(max_size=30), max_size=6), st.sampled_from([b" ", b"\t", b" \t "]))
def test_quoted_inline_round_trip(args, sep):
    """Whatever redis-cli's quoting produces, the inline splitter reads back unchanged."""
    line = sep.join(sds_repr(a) for a in args)
    assert split_inline(line) == args
    if args:
        assert parse_all(b"CMD " + line + b"\r\n") == [[b"CMD"] + args]


def test_inline_line_limit():
    parser = RequestParser()
    parser.feed(b"A" * MAX_INLINE)
    assert parser.next_command() is None  # at the limit: still waiting
    parser.feed(b"A")
    with pytest.raises(ProtocolError, match="^Protocol error: too big inline request$"):
        parser.next_command()


def test_long_inline_line_with_newline_is_accepted():
    # like Redis: the limit is on a line without its newline yet
    value = b"x" * (MAX_INLINE + 10)
    assert parse_all(b"ECHO " + value + b"\r\n") == [[b"ECHO", value]]


# ---------------------------------------------------------------------------
# malformed multibulk requests: Redis's error texts


@pytest.mark.parametrize(("data", "text"), [
    (b"*x\r\n", "Protocol error: invalid multibulk length"),
    (b"*\r\n", "Protocol error: invalid multibulk length"),
    (b"*1\n$4\r\nPING\r\n", "Protocol error: invalid multibulk length"),
    (b"*" + b"1" * 100, "Protocol error: invalid multibulk length"),  # no CRLF in sight
    (b"*%d\r\n" % (MAX_MULTIBULK + 1), "Protocol error: invalid multibulk length"),
    (b"*1\r\nx4\r\nPING\r\n", "Protocol error: expected '$', got 'x'"),
    (b"*2\r\n$4\r\nECHO\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
    (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$%d\r\n" % (MAX_BULK + 1), "Protocol error: invalid bulk length"),
    (b"*1\r\n$" + b"9" * 100, "Protocol error: invalid bulk length"),
])
def test_malformed_multibulk(data, text):
    assert error_of(data) == text


@pytest.mark.parametrize("data", [
    b"*+1\r\n$4\r\nPING\r\n", b"* 1\r\n$4\r\nPING\r\n", b"*01\r\n$4\r\nPING\r\n",
    b"*-0\r\n", b"*1_0\r\n",
])
def test_non_canonical_multibulk_counts_are_rejected_like_redis(data):
    assert error_of(data) == "Protocol error: invalid multibulk length"


@pytest.mark.parametrize("data", [
    b"*1\r\n$+4\r\nPING\r\n", b"*1\r\n$ 4\r\nPING\r\n", b"*1\r\n$04\r\nPING\r\n",
])
def test_non_canonical_bulk_lengths_are_rejected_like_redis(data):
    assert error_of(data) == "Protocol error: invalid bulk length"


def test_error_after_good_commands_comes_in_order():
    parser = RequestParser()
    parser.feed(b"PING\r\n" + multibulk(b"GET", b"k") + b"*1\r\n?")
    assert parser.next_command() == [b"PING"]
    assert parser.next_command() == [b"GET", b"k"]
    with pytest.raises(ProtocolError, match="expected '\\$', got '\\?'"):
        parser.next_command()


def _peak_bytes(data_chunks: list[bytes]) -> tuple[int, list[object]]:
    parser = RequestParser()
    outcomes: list[object] = []
    tracemalloc.start()
    try:
        for chunk in data_chunks:
            parser.feed(chunk)
            try:
                outcomes.append(parser.next_command())
            except ProtocolError as exc:
                outcomes.append(exc)
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, outcomes


@pytest.mark.parametrize("chunks", [
    [b"*2000000000\r\n"],
    [b"*2147483648\r\n"],
    [b"*99999999999999999999\r\n"],
    [b"*%d\r\n" % MAX_MULTIBULK, b"$%d\r\n" % MAX_BULK, b"x" * 1000],
    [b"*1\r\n$2000000000\r\n"],
    [b"*1\r\n$%d\r\n" % MAX_BULK, b"abc"],
])
def test_huge_declared_sizes_do_not_allocate(chunks):
    """A client announcing billions of elements or bytes gets an error or a wait, not a
    pre-allocation (hiredis would allocate the array up front: 16 GB for *2000000000)."""
    peak, outcomes = _peak_bytes(chunks)
    assert peak < 1_000_000
    for outcome in outcomes:
        assert outcome is None or isinstance(outcome, ProtocolError), outcome


# ---------------------------------------------------------------------------
# trailing garbage and fuzz


@given(binary_args, st.binary(max_size=40))
def test_complete_command_comes_out_before_trailing_garbage(args, garbage):
    parser = RequestParser()
    parser.feed(multibulk(*args) + garbage)
    assert parser.next_command() == args
    try:
        while parser.next_command() is not None:
            pass
    except ProtocolError:
        pass


def test_trailing_garbage_examples():
    parser = RequestParser()
    parser.feed(b"*1\r\n$4\r\nPING\r\nxx")
    assert parser.next_command() == [b"PING"]
    assert parser.next_command() is None  # "xx" may yet become an inline command
    assert parser.buffered() == 2
    parser.feed(b" yy\r\n")
    assert parser.next_command() == [b"xx", b"yy"]
    # like Redis, the CRLF after a bulk is skipped, not checked
    assert parse_all(b"*1\r\n$4\r\nPINGxx") == [[b"PING"]]


@given(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")) |
                st.sampled_from([b"*", b"$", b"\r\n", b"*1\r\n", b"$3\r\n", b"*-1\r\n", b'"', b"'",
                                 b"\\", b"*2147483648\r\n"]), max_size=12))
def test_fuzz_only_commands_waits_or_protocol_errors(pieces):
    parser = RequestParser()
    for piece in pieces:
        parser.feed(piece)
        try:
            for command in iter(parser.next_command, None):
                assert isinstance(command, list)
                assert all(type(arg) is bytes for arg in command)
        except ProtocolError as exc:
            assert str(exc).startswith("Protocol error: ")
            return


# ---------------------------------------------------------------------------
# the reply encoder: exact bytes

INF = float("inf")


@pytest.mark.parametrize(("value", "resp2", "resp3"), [
    (b"abc", b"$3\r\nabc\r\n", b"$3\r\nabc\r\n"),
    (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
    ("é", b"$2\r\n\xc3\xa9\r\n", b"$2\r\n\xc3\xa9\r\n"),
    (OK, b"+OK\r\n", b"+OK\r\n"),
    (PONG, b"+PONG\r\n", b"+PONG\r\n"),
    (Simple("QUEUED"), b"+QUEUED\r\n", b"+QUEUED\r\n"),
    (42, b":42\r\n", b":42\r\n"),
    (-7, b":-7\r\n", b":-7\r\n"),
    (2**63 - 1, b":9223372036854775807\r\n", b":9223372036854775807\r\n"),
    (NIL, b"$-1\r\n", b"_\r\n"),
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
    (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
    (3.0, b"$1\r\n3\r\n", b",3\r\n"),
    (INF, b"$3\r\ninf\r\n", b",inf\r\n"),
    (-INF, b"$4\r\n-inf\r\n", b",-inf\r\n"),
    (float("nan"), b"$3\r\nnan\r\n", b",nan\r\n"),
    ([], b"*0\r\n", b"*0\r\n"),
    ([b"a", 1, None], b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n", b"*3\r\n$1\r\na\r\n:1\r\n_\r\n"),
    ((b"a",), b"*1\r\n$1\r\na\r\n", b"*1\r\n$1\r\na\r\n"),
    ([[b"x"], []], b"*2\r\n*1\r\n$1\r\nx\r\n*0\r\n", b"*2\r\n*1\r\n$1\r\nx\r\n*0\r\n"),
    ({b"k": 1, b"j": b"v"}, b"*4\r\n$1\r\nk\r\n:1\r\n$1\r\nj\r\n$1\r\nv\r\n",
     b"%2\r\n$1\r\nk\r\n:1\r\n$1\r\nj\r\n$1\r\nv\r\n"),
    ({}, b"*0\r\n", b"%0\r\n"),
    ({b"b", b"a"}, b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", b"~2\r\n$1\r\na\r\n$1\r\nb\r\n"),
    (frozenset([b"z"]), b"*1\r\n$1\r\nz\r\n", b"~1\r\n$1\r\nz\r\n"),
    (Verbatim("hi"), b"$2\r\nhi\r\n", b"=6\r\ntxt:hi\r\n"),
    (ReplyError("ERR x"), b"-ERR x\r\n", b"-ERR x\r\n"),
    (ReplyError("ERR a\r\nb"), b"-ERR a  b\r\n", b"-ERR a  b\r\n"),
    (NullArray, b"*-1\r\n", b"_\r\n"),
    (Push([b"message", 1]), b"*2\r\n$7\r\nmessage\r\n:1\r\n", b">2\r\n$7\r\nmessage\r\n:1\r\n"),
    ([True, 0.5, Verbatim("v")], b"*3\r\n:1\r\n$3\r\n0.5\r\n$1\r\nv\r\n",
     b"*3\r\n#t\r\n,0.5\r\n=5\r\ntxt:v\r\n"),
])
def test_encode_exact_bytes(value, resp2, resp3):
    assert encode(value) == resp2
    assert encode(value, 2) == resp2
    assert encode(value, 3) == resp3
    # the top-level fast path and the nested encoder agree
    assert encode([value], 2) == b"*1\r\n" + resp2
    assert encode([value], 3) == b"*1\r\n" + resp3


def test_encode_rejects_unknown_types():
    with pytest.raises(TypeError):
        encode(object())
    with pytest.raises(TypeError):
        encode([1, object()], 3)


# ---------------------------------------------------------------------------
# the reply encoder: random values through hiredis


class _Double:
    """What a double must read back as: a float in RESP3, its text in RESP2."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, bytes):
            other = float(other)
        if not isinstance(other, float):
            return NotImplemented
        if math.isnan(self.value):
            return math.isnan(other)
        return other == self.value

    def __repr__(self) -> str:
        return f"_Double({self.value!r})"


def expected_reading(value, proto: int):
    """What hiredis must read back from ``encode(value, proto)``."""
    if isinstance(value, ReplyError):
        return ("error", value.text)
    if value is None or value is NullArray:
        return None
    if isinstance(value, bool):
        return value if proto == 3 else int(value)
    if isinstance(value, int | bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, float):
        return _Double(value)
    if isinstance(value, dict):
        if proto == 3:
            return {k: expected_reading(v, proto) for k, v in value.items()}
        return [expected_reading(x, proto) for kv in value.items() for x in kv]
    if isinstance(value, set | frozenset):
        return [expected_reading(x, proto) for x in sorted(value)]
    return [expected_reading(x, proto) for x in value]


def readable(parsed):
    if isinstance(parsed, hiredis.ReplyError):
        return ("error", str(parsed))
    if isinstance(parsed, dict):
        return {k: readable(v) for k, v in parsed.items()}
    if isinstance(parsed, list):  # also hiredis.PushNotification
        return [readable(x) for x in parsed]
    return parsed


text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20)
scalars = st.one_of(
    st.binary(max_size=30),
    text,
    text.map(Simple),
    text.map(Verbatim),
    st.integers(-(2**63), 2**63 - 1),
    st.none(),
    st.just(NullArray),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), min_size=1, max_size=20)
    .map(lambda t: ReplyError("ERR " + t)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.lists(inner, max_size=4).map(Push),
        st.dictionaries(st.binary(max_size=8), inner, max_size=4),
        st.sets(st.binary(max_size=8), max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(values, st.sampled_from([2, 3]))
def test_encode_round_trips_through_hiredis(value, proto):
    data = encode(value, proto)
    reader = hiredis.Reader()
    # byte by byte: each value is exactly one complete frame
    for i in range(len(data) - 1):
        reader.feed(data[i:i + 1])
        assert reader.gets() is False
    reader.feed(data[-1:])
    assert readable(reader.gets()) == expected_reading(value, proto)
    assert reader.gets() is False


def test_text_that_is_not_utf8_is_replaced_not_fatal():
    assert encode(ReplyError("ERR \ud800"), 2) == b"-ERR ?\r\n"
    assert encode("\ud800", 3) == b"$1\r\n?\r\n"


# ---------------------------------------------------------------------------
# the fast gear (hiredis) against the slow gear alone: same commands, same error


def outcome(chunks: list[bytes], fast: bool) -> tuple[list[list[bytes]], str | None]:
    parser = RequestParser(fast=fast)
    out: list[list[bytes]] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (cmd := parser.next_command()) is not None:
                out.append(cmd)
    except ProtocolError as exc:
        return out, str(exc)
    return out, None


HOSTILE = [b"*1\r\n+PING\r\n", b"*2\r\n$4\r\nECHO\r\n=8\r\ntxt:abcd\r\n", b"*2\r\n$4\r\nECHO\r\n:1\r\n",
           b"*1\r\n*1\r\n$1\r\na\r\n", b"*1\r\n$-1\r\n", b"*1\r\n$-5\r\n", b"*-3\r\n", b"*0\r\n",
           b"*01\r\n$4\r\nPING\r\n", b"*1\r\n$04\r\nPING\r\n", b"*1\r\n$+4\r\nPING\r\n",
           b"*1\r\n$600000000\r\n", b"*2000000000\r\n", b"*1\n$4\r\nPING\r\n", b"PING\r\n",
           b"\r\n", b"*1\r\n$4\r\nPINGxx", b"*1\r\n_\r\n", b"*1\r\n,1.5\r\n", b"*1\r\n-ERR x\r\n",
           b"*1\r\n%1\r\n$1\r\na\r\n$1\r\nb\r\n"]


@st.composite
def mixed_stream(draw):
    parts = draw(st.lists(st.one_of(
        st.lists(st.binary(max_size=20), min_size=1, max_size=4).map(lambda a: multibulk(*a)),
        st.sampled_from(HOSTILE)), max_size=8))
    return b"".join(parts)


@settings(max_examples=300)
@given(mixed_stream(), st.lists(st.integers(min_value=0), max_size=6))
def test_fast_gear_parses_exactly_like_the_slow_gear(data, cuts):
    chunks = splits(data, cuts)
    assert outcome(chunks, fast=True) == outcome(chunks, fast=False)


def test_fast_gear_survives_a_stream_that_never_pauses():
    # every read ends inside a request: the slow gear takes each incomplete one
    cmds = [[b"SET", b"k%d" % i, b"v" * (i % 150)] for i in range(600)]
    data = b"".join(multibulk(*c) for c in cmds)
    assert parse_chunks(splits(data, list(range(7, len(data), 97)))) == cmds
