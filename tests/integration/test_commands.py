"""The command table and the server/connection commands: COMMAND data (read from a
replica at startup) against a real redis-server, handshakes (HELLO, AUTH, RESET), CLIENT, CONFIG, INFO, unsupported
commands; keyspace-wide commands with internal keys, dead objects and down replicas;
the long-double emulation behind INCRBYFLOAT."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import redis
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from redquorum.commands import TABLE, Batch
from redquorum.commands.commanddata import SUBCOMMANDS, CommandData, fetch, served_names
from redquorum.commands.connection import cmd_command
from redquorum.commands.longdouble import LongDouble
from redquorum.commands.table import UNSUPPORTED as UNSUPPORTED_NAMES
from redquorum.config import Replica
from redquorum.protocol.glob import stringmatch
from redquorum.protocol.resp import ReplyError, SetReply, Simple, Verbatim
from redquorum.replicas.launcher import free_port, launch, stop_all

from tests.harness import ProxyProcess, start_replicas, wait_for
from tests.integration.test_differential import Pair
from tests.resp_client import RawClient


class SecuredProxy(ProxyProcess):
    """A proxy with a password: ready when it answers PING with NOAUTH."""

    ready_reply = b"-NOAUTH"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("commands")
    reference = launch(1, base / "reference", prefix="ref")
    replicas = start_replicas(3, base / "replicas")
    proxies: list[ProxyProcess] = []
    try:
        proxies.append(ProxyProcess(replicas, log_path=base / "proxy.log"))
        wait_for(lambda: command_data_loaded(proxies[0].port), what="the proxy's COMMAND data")
        proxies.append(SecuredProxy(replicas, log_path=base / "secured.log",
                                    extra=["--password", "s3cret"]))
        yield reference[0].port, proxies, replicas
    finally:
        for proxy in proxies:
            proxy.stop()
        replicas.stop()
        stop_all(reference)


@pytest.fixture
def servers(cluster):
    """(reference redis port, proxy port, replicas)"""
    return cluster[0], cluster[1][0].port, cluster[2]


@pytest.fixture
def pair(servers):
    p = Pair(servers[:2])
    p.both("FLUSHALL")
    yield p
    p.close()


# ---------------------------------------------------------------------------
# COMMAND


def command_data_loaded(port: int) -> bool:
    """Whether the proxy has read COMMAND INFO/DOCS from a replica (the table alone has
    no argument docs)."""
    with RawClient(port) as c:
        c.call("HELLO", "3")
        docs = c.call("COMMAND", "DOCS", "get")
    return bool(docs.get(b"get", {}).get(b"arguments"))


def _cut(container: bytes, subs, served: set[bytes]):
    """A reference container's subcommands (INFO entries or DOCS map) cut to ``served``."""
    if isinstance(subs, dict):
        return {k: v for k, v in subs.items() if k in served}
    return [e for e in subs if e[0] in served]


@pytest.mark.parametrize("protocol", [2, 3])
def test_command_info_and_docs_are_the_replicas(servers, protocol):
    """Every served Redis command is described exactly as redis-server describes it (the
    containers with only their served subcommands), RQ.* commands from the table."""
    names = served_names()
    with RawClient(servers[0]) as ref, RawClient(servers[1]) as proxy:
        ref.call("HELLO", str(protocol))
        proxy.call("HELLO", str(protocol))
        for name in names:
            expected_info, got_info = (c.call("COMMAND", "INFO", name)[0] for c in (ref, proxy))
            expected_docs, got_docs = (c.call("COMMAND", "DOCS", name) for c in (ref, proxy))
            if protocol == 2:  # flat arrays: compare as maps
                expected_docs = dict(zip(expected_docs[::2], expected_docs[1::2], strict=True))
                got_docs = dict(zip(got_docs[::2], got_docs[1::2], strict=True))
            expected_doc, got_doc = expected_docs[name.encode()], got_docs[name.encode()]
            if name in SUBCOMMANDS:
                served = {f"{name}|{s}".encode() for s in SUBCOMMANDS[name]}
                assert got_info[:9] == expected_info[:9], name
                cut = _cut(name.encode(), expected_info[9], served)
                assert [e for e in got_info[9] if e[0] in {x[0] for x in cut}] == sorted(cut), name
                assert {e[0] for e in got_info[9]} == served, name
                if protocol == 3:
                    expected_subs = _cut(name.encode(), expected_doc[b"subcommands"], served)
                    got_subs = got_doc[b"subcommands"]
                    assert {k: got_subs[k] for k in expected_subs} == expected_subs, name
                    assert set(got_subs) == served, name
                    assert {k: v for k, v in got_doc.items() if k != b"subcommands"} == {
                        k: v for k, v in expected_doc.items() if k != b"subcommands"}, name
            else:
                assert got_info == expected_info, name
                assert got_doc == expected_doc, name
        rq = proxy.call("COMMAND", "INFO", "rq.get")[0]
        assert rq[0] == b"rq.get" and rq[1] == TABLE[b"rq.get"].arity


def test_table_arity_and_keys_match_redis(servers):
    with RawClient(servers[0]) as c:
        c.call("HELLO", "3")
        infos = dict(zip(TABLE, c.call("COMMAND", "INFO", *[n.decode() for n in TABLE]),
                         strict=True))
    for name, c in TABLE.items():
        info = infos[name]
        if info is None:
            assert name.startswith(b"rq."), f"{name!r} is neither a Redis command nor redquorum's"
            continue
        assert (c.arity, c.first_key, c.last_key, c.step) == tuple(info[1:2] + info[3:6]), name
        assert set(c.flags) >= {str(f) for f in info[2]} & {"write", "readonly", "noauth"}, name
        for sub, arity in SUBCOMMANDS.get(c.name, {}).items():
            ref = next((e for e in info[9] if e[0] == f"{c.name}|{sub}".encode()), None)
            assert ref is None or ref[1] == arity, (c.name, sub)


def _answer(data: CommandData, *args: str):
    app = SimpleNamespace(commanddata=data)
    return cmd_command(app, None, [a.encode() for a in args], Batch())


def test_command_answers_before_any_replica_answered():
    """From the table alone: well-formed, every command and served subcommand listed."""
    data = CommandData()
    infos = _answer(data, "COMMAND")
    assert len(infos) == len(TABLE) == _answer(data, "COMMAND", "COUNT")
    for entry in infos:
        assert len(entry) == 10 and isinstance(entry[0], str) and isinstance(entry[1], int)
    get = _answer(data, "COMMAND", "INFO", "get")[0]
    assert get[:6] == ["get", 2, SetReply([Simple("readonly"), Simple("fast")]), 1, 1, 1]
    assert _answer(data, "COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2") == [b"a", b"b"]
    assert _answer(data, "COMMAND", "INFO", "client|setname")[0][:2] == ["client|setname", 3]
    listed = _answer(data, "COMMAND", "LIST")
    assert "client|setname" in listed and "config|get" in listed and "rq.get" in listed
    docs = _answer(data, "COMMAND", "DOCS")
    assert set(docs) == {c.name for c in TABLE.values()}
    assert all(doc["summary"] and doc["group"] for doc in docs.values())
    assert "config|get" in docs["config"]["subcommands"]
    # once loaded, the answers change (the cached views are rebuilt)
    data.store({"get": ["get", 2, SetReply(), 1, 1, 1, SetReply(), SetReply(), SetReply(),
                        SetReply()]}, {"get": {"summary": "x"}}, "7.0.0")
    assert _answer(data, "COMMAND", "DOCS", "get") == {"get": {"summary": "x"}}


def test_fetch_and_keep_loading_from_a_real_server(servers):
    dead = Replica("dead", "127.0.0.1", free_port())
    live = Replica("live", "127.0.0.1", servers[0])
    data = CommandData()

    async def main():
        info, docs, version = await fetch(live.host, live.port)
        assert set(info) == set(served_names()) == set(docs)
        assert [e[0] for e in info["config"][9]] == ["config|get", "config|help", "config|resetstat"]
        assert version
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(data.keep_loading, [dead, live])
                await data.wait_loaded()
        assert data.source == f"127.0.0.1:{servers[0]}" and data.info == info
        stuck = CommandData()
        with trio.move_on_after(0.3):
            await stuck.keep_loading([dead], interval=0.05)
        assert not stuck.loaded
        with trio.fail_after(1):
            await stuck.wait_tried()
        wrong = Replica("wrong", "127.0.0.1", servers[0], password="nope")
        with pytest.raises(Exception, match="AUTH"):
            await fetch(wrong.host, wrong.port, wrong.password)

    trio.run(main)


def test_command_lists_only_supported_commands(pair):
    for protocol in (2, 3):
        pair.both("HELLO", str(protocol))
        listed = pair.proxy.call("COMMAND")
        names = {entry[0] for entry in listed}
        assert pair.proxy.call("COMMAND", "COUNT") == len(listed) == len(TABLE)
        assert {b"get", b"set", b"scan", b"hello", b"rq.get"} <= names
        assert not names & {b"hset", b"subscribe", b"eval", b"cluster", b"lpush"}
        every = pair.proxy.call("COMMAND", "LIST")
        assert b"client|setname" in every and b"client|kill" not in every
        assert b"config|get" in every and b"config|set" not in every


COMMAND_QUERIES = [
    ["COMMAND", "INFO", "get", "set", "mset", "rename", "copy", "scan", "hello", "client|list", "nope"],
    ["COMMAND", "DOCS", "set", "getex", "expire", "scan", "nope"],
    ["COMMAND", "DOCS", "client|no-evict", "config|get"],
    ["COMMAND", "GETKEYS", "SET", "a", "b"],
    ["COMMAND", "GETKEYS", "MSET", "a", "1", "b"],
    ["COMMAND", "GETKEYS", "RENAME", "a", "b"],
    ["COMMAND", "GETKEYS", "GET"],
    ["COMMAND", "GETKEYS", "PING", "x"],
    ["COMMAND", "GETKEYS", "NOPE", "x"],
    ["COMMAND", "GETKEYS", "KEYS", "*"],
    ["COMMAND", "GETKEYS", "CLIENT", "LIST"],
    ["COMMAND", "GETKEYSANDFLAGS", "SET", "a", "b"],
    ["COMMAND", "GETKEYSANDFLAGS", "SET", "a", "b", "GET"],
    ["COMMAND", "GETKEYSANDFLAGS", "COPY", "a", "b"],
    ["COMMAND", "GETKEYSANDFLAGS", "DEL", "a", "b"],
    ["COMMAND", "GETKEYSANDFLAGS", "MSETNX", "a", "1", "b", "2"],
    ["COMMAND", "LIST", "FILTERBY", "ACLCAT", "string"],
    ["COMMAND", "LIST", "FILTERBY", "PATTERN", "get*"],
    ["COMMAND", "LIST", "FILTERBY", "MODULE", "x"],
    ["COMMAND", "LIST", "foo"],
    ["COMMAND", "COUNT", "x"],
    ["COMMAND", "FOO"],
    ["CLIENT", "SETNAME"],
    ["CLIENT", "FOO"],
    ["CLIENT", "NO-EVICT", "maybe"],
    ["CLIENT", "LIST", "TYPE", "x"],
    ["CLIENT", "LIST", "ID", "x"],
    ["CLIENT", "LIST", "TYPE", "pubsub"],
    ["CLIENT", "LIST", "foo"],
    ["CLIENT", "SETNAME", "a b"],
    ["CLIENT", "SETNAME", ""],
    ["CLIENT", "GETNAME"],
    ["CONFIG", "GET"],
    ["CONFIG", "GET", "databases", "save"],
    ["CONFIG", "GET", "nosuch*"],
    ["CONFIG", "FOO"],
    ["HELLO", "3", "SETNAME"],
    ["HELLO", "3", "AUTH", "default", "anything"],
    ["HELLO", "3", "AUTH", "someone", "x"],
    ["AUTH", "x"],
    ["AUTH", "default", "x"],
    ["AUTH", "a", "b", "c"],
    ["SELECT", "3000000000"],
    ["ROLE"],
    ["FLUSHALL", "x"],
    ["FLUSHDB", "SYNC"],
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_command_and_connection_replies_match_redis(pair, protocol):
    """Same replies as redis-server 7.0 (COMMAND LIST compared as sets; the proxy lists
    only what it serves, so those are compared on redis's subset)."""
    pair.run(["HELLO", str(protocol)])
    for query in COMMAND_QUERIES:
        if query[:2] == ["COMMAND", "LIST"] and len(query) == 5:
            expected, got = pair.both(*query)
            if isinstance(expected, list):
                served = {n for n in expected if n.split(b"|")[0] in TABLE}
                assert set(got) == served, query
                continue
        pair.run(query)


def test_redis_cli_help_comes_from_command_docs(servers):
    with RawClient(servers[1]) as c:
        c.call("HELLO", "3")
        docs = c.call("COMMAND", "DOCS")
    assert set(docs) == {c.name.encode() for c in TABLE.values()}
    assert docs[b"set"][b"group"] == b"string"
    assert docs[b"client"][b"subcommands"][b"client|setinfo"][b"since"] == b"7.2.0"


# ---------------------------------------------------------------------------
# handshakes, CLIENT, RESET, INFO, CONFIG, unsupported commands


def test_hello_switches_protocol_and_reset_switches_back(servers):
    with RawClient(servers[1]) as c:
        hello = c.call("HELLO", "3", "SETNAME", "me")
        assert hello[b"proto"] == 3 and hello[b"server"] == b"redis"
        assert c.call("GET", "nothing") is None  # RESP3 null
        assert c.call("CLIENT", "GETNAME") == b"me"
        assert isinstance(c.call("CLIENT", "INFO"), Verbatim)
        assert c.call("RESET") == Simple("RESET")
        assert c.call("CLIENT", "GETNAME") is not None  # RESP2 null bulk again
        assert b"resp=2" in c.call("CLIENT", "INFO")
        assert c.call("HELLO")[1] == b"redis"  # no version: stays on RESP2, flat array


def test_client_subcommands(servers):
    with RawClient(servers[1]) as c, RawClient(servers[1]) as other:
        ident = c.call("CLIENT", "ID")
        assert isinstance(ident, int)
        assert c.call("CLIENT", "SETINFO", "LIB-NAME", "mylib") == Simple("OK")
        assert c.call("CLIENT", "SETINFO", "lib-ver", "1.2") == Simple("OK")
        assert c.call("CLIENT", "SETINFO", "foo", "x").text == "ERR Unrecognized option 'foo'"
        assert c.call("CLIENT", "NO-EVICT", "on") == Simple("OK")
        assert c.call("CLIENT", "NO-TOUCH", "off") == Simple("OK")
        line = c.call("CLIENT", "INFO")
        assert f"id={ident} ".encode() in line and b"lib-name=mylib lib-ver=1.2" in line
        other.call("CLIENT", "SETNAME", "other")
        listing = c.call("CLIENT", "LIST").decode()
        assert f"id={ident} " in listing and "name=other" in listing
        only = c.call("CLIENT", "LIST", "ID", str(ident)).decode()
        assert only.count("\n") == 1 and f"id={ident} " in only
        for sub in ("KILL", "PAUSE", "TRACKING", "REPLY", "UNBLOCK", "CACHING"):
            reply = c.call("CLIENT", sub, "x", "y")
            assert isinstance(reply, ReplyError) and f"'CLIENT {sub}'" in reply.text
        assert c.call("CONFIG", "SET", "maxmemory", "1").text.startswith(
            "ERR redquorum does not support 'CONFIG SET'")
        assert c.call("PING") == Simple("PONG")


UNSUPPORTED = [["PFADD", "p", "x"], ["SORT", "a"], ["SUBSCRIBE", "ch"], ["PUBLISH", "ch", "m"],
               ["BLPOP", "l", "0"], ["EVAL", "return 1", "0"], ["FCALL", "f", "0"],
               ["CLUSTER", "INFO"], ["HSET", "h", "f", "v"], ["LPUSH", "l", "x"], ["SADD", "s", "x"],
               ["ZADD", "z", "1", "x"], ["XADD", "x", "*", "f", "v"], ["GEOPOS", "g", "m"],
               ["OBJECT", "ENCODING", "a"], ["WAIT", "1", "0"], ["MOVE", "a", "1"]]


def test_unsupported_commands_name_themselves_and_keep_the_connection(servers):
    with RawClient(servers[1]) as c:
        for cmd in UNSUPPORTED:
            reply = c.call(*cmd)
            assert isinstance(reply, ReplyError), cmd
            assert f"'{cmd[0].lower()}'" in reply.text and "does not support" in reply.text, reply
            assert c.call("PING") == Simple("PONG")
        reply = c.call("NOSUCHCOMMAND", "x")
        assert reply.text.startswith("ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'x'")


def test_every_redis_command_is_served_or_refused_by_name(servers):
    with RawClient(servers[0]) as c:
        names = {n for n in c.call("COMMAND", "LIST") if b"|" not in n}
    assert names, "the reference redis-server listed no commands"
    assert {n for n in names if n not in TABLE and n.decode() not in UNSUPPORTED_NAMES} == set()


def test_handshakes_with_a_password(cluster):
    port = cluster[1][1].port
    with RawClient(port) as c:
        assert c.call("GET", "x").text.startswith("NOAUTH")
        assert c.call("HELLO", "3").text.startswith("NOAUTH HELLO must be called")
        assert c.call("HELLO", "3", "AUTH", "default", "wrong").text.startswith("WRONGPASS")
        hello = c.call("HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "app")
        assert hello[b"proto"] == 3
        assert c.call("CLIENT", "GETNAME") == b"app"
        assert c.call("RESET") == Simple("RESET")
        assert c.call("GET", "x").text.startswith("NOAUTH")
        assert c.call("AUTH", "s3cret") == Simple("OK")
        assert c.call("PING") == Simple("PONG")
    client = redis.Redis(port=port, protocol=3, password="s3cret")
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_info_sections(servers):
    client = redis.Redis(port=servers[1], protocol=2)
    try:
        with RawClient(servers[1]) as c:
            text = c.call("INFO").decode()
            only = c.call("INFO", "server", "cpu").decode()
            assert "# Commandstats" in c.call("INFO", "all").decode()
            assert c.call("INFO", "nosuch") == b""
        titles = [line for line in text.split("\r\n") if line.startswith("#")]
        assert titles == ["# Server", "# Clients", "# Memory", "# Persistence", "# Stats",
                          "# Replication", "# CPU", "# Modules", "# Errorstats", "# Cluster",
                          "# Keyspace", "# Redquorum"]
        info = client.info()
        for field in ("redis_version", "redis_mode", "arch_bits", "mem_allocator",
                      "cluster_enabled", "loading", "role", "connected_clients", "uptime_in_seconds"):
            assert field in info, field
        assert info["loading"] == 0 and info["cluster_enabled"] == 0 and info["arch_bits"] == 64
        assert only.startswith("# Server\r\n") and "# CPU\r\n" in only and "# Memory" not in only
    finally:
        client.close()


def test_stringmatch_is_redis_glob():
    cases = [(b"*", b"", True), (b"a*", b"abc", True), (b"a?c", b"abc", True), (b"a?c", b"ac", False),
             (b"[ab]x", b"bx", True), (b"[^ab]x", b"bx", False), (b"[a-c]", b"b", True),
             (b"[c-a]", b"b", True), (b"\\*", b"*", True), (b"\\*", b"a", False),
             (b"*max*mem*", b"maxmemory-policy", True), (b"a*b*c", b"aXbYc", True),
             (b"a*b*c", b"aXbY", False)]
    for pattern, text, expected in cases:
        assert stringmatch(pattern, text) is expected, (pattern, text)


# ---------------------------------------------------------------------------
# keyspace-wide commands


def test_internal_keys_and_dead_objects_never_show(servers, pair):
    port, replicas = servers[1], servers[2]
    client = redis.Redis(port=port, protocol=3)
    try:
        client.mset({"live1": "1", "live2": "2", "gone": "3", "short": "4"})
        client.delete("gone")
        client.pexpire("short", 1)
        for rep in replicas:
            raw = replicas.raw(rep.id)
            raw.set("__rq:test:internal", "x")
            raw.hset("__rq:test:hash", "f", "v")
        wait_for(lambda: client.exists("short") == 0, what="the short key to expire")
        assert sorted(client.keys("*")) == [b"live1", b"live2"]
        assert sorted(client.keys("__rq*")) == []
        assert set(client.scan_iter(count=1)) == {b"live1", b"live2"}
        assert client.dbsize() == 2
        for _ in range(20):
            assert client.randomkey() in (b"live1", b"live2")
        assert client.flushdb() is True
        assert client.dbsize() == 0 and client.randomkey() is None
    finally:
        client.close()


def test_scan_cursor_walks_every_replica(servers, pair):
    client = redis.Redis(port=servers[1], protocol=2)
    try:
        keys = {f"k{i}".encode() for i in range(120)}
        client.mset({k: b"v" for k in keys})
        seen: list[bytes] = []
        cursor, calls, visited = 0, 0, set()
        while True:
            cursor, batch = client.scan(cursor, count=7)
            calls += 1
            seen += batch
            visited.add(cursor & 0xFF)
            assert len(batch) == len(set(batch))  # no duplicates within a reply
            if cursor == 0:
                break
        assert set(seen) == keys  # nothing missed; duplicates allowed across replies
        assert visited >= {0, 1, 2} and calls > 3
        assert client.scan(0, _type="hash") == (0, [])
    finally:
        client.close()


def test_keyspace_commands_with_replicas_down(tmp_path):
    replicas = start_replicas(3, tmp_path / "replicas")
    proxy = ProxyProcess(replicas, log_path=tmp_path / "proxy.log", timeout=0.3)
    client = proxy.client()
    try:
        client.mset({f"k{i}": "v" for i in range(30)})
        replicas[1].kill()
        wait_for(lambda: client.info("redquorum")["replicas_up"] == 2, what="the replica to be down")
        with pytest.raises(redis.ResponseError, match="FLUSHDB must reach every replica and r2 is down"):
            client.flushdb()
        with pytest.raises(redis.ResponseError, match="FLUSHALL must reach every replica"):
            client.flushall()
        # one replica down with w=2: still nothing missed, the walk skips it
        assert client.dbsize() == 30
        assert len(client.keys("*")) == 30
        assert {k for k in client.scan_iter(count=5)} == {f"k{i}".encode() for i in range(30)}
        assert client.randomkey() is not None
        replicas[2].kill()
        wait_for(lambda: client.info("redquorum")["replicas_up"] == 1, what="two replicas down")
        with pytest.raises(redis.ResponseError, match="NOQUORUM"):
            client.dbsize()
        with pytest.raises(redis.ResponseError, match="NOQUORUM"):
            list(client.scan_iter())
        assert client.ping() is True
    finally:
        client.close()
        proxy.stop()
        replicas.stop()


def test_msetnx_semantics(servers, pair):
    client = redis.Redis(port=servers[1], protocol=2)
    try:
        assert client.msetnx({"m1": "a", "m2": "b"}) is True
        assert client.msetnx({"m2": "x", "m3": "y"}) is False
        assert client.get("m3") is None and client.get("m2") == b"b"
        assert client.execute_command("MSETNX", "m4", "1", "m4", "2") == 1
        assert client.get("m4") == b"2"
    finally:
        client.close()


def test_rename_moves_the_value_get_answers(servers, pair):
    """RENAME deletes the source with the causal context it read (every sibling it saw)."""
    client = redis.Redis(port=servers[1], protocol=2)
    try:
        client.set("src", "v1")
        # a write that did not see v1 (empty context): a sibling
        client.execute_command("RQ.SET", "src", "", "v2")
        ctx, values = client.execute_command("RQ.GET", "src")
        assert sorted(values) == [b"v1", b"v2"]
        assert client.rename("src", "dst") is True
        assert client.get("dst") in (b"v1", b"v2")
        assert client.exists("src") == 0  # both siblings were read, so both are deleted
    finally:
        client.close()


# ---------------------------------------------------------------------------
# INCRBYFLOAT's long double


def test_long_double_known_values():
    def incr(current: bytes | None, by: bytes) -> bytes | None:
        value = LongDouble.parse(current) if current is not None else LongDouble.ZERO
        step = LongDouble.parse(by)
        if value is None or step is None:
            return None
        total = value.add(step)
        return None if total is None else total.format_human()

    assert incr(b"10.50", b"0.1") == b"10.6"
    assert incr(b"10.6", b"5.0e3") == b"5010.60000000000000009"
    assert incr(b"0.1", b"0.2") == b"0.3"
    assert incr(None, b"0.000003814697265625") == b"0.00000381469726562"  # ties to even
    assert incr(None, b"0x1p-3") == b"0.125"
    assert incr(None, b"-0") == b"0"
    assert incr(None, b"inf") is None and incr(None, b"nan") is None
    assert incr(None, b"1e5000") is None and incr(None, b"1e-5000") is None
    assert incr(None, b" 1") is None and incr(None, b"1e") is None and incr(None, b"0x") is None
    assert incr(None, b"1e4000").startswith(b"99999999999999999999654638730996237849")


FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
    st.tuples(st.integers(-10**20, 10**20), st.integers(-40, 40)).map(
        lambda t: f"{t[0]}e{t[1]}".encode()),
    st.decimals(allow_nan=False, allow_infinity=False, places=8).map(lambda d: str(d).encode()),
)


@settings(max_examples=150, deadline=None)
@given(current=FLOATS, step=FLOATS)
def test_long_double_matches_redis(cluster, current, step):
    with RawClient(cluster[0]) as c:
        c.call("SET", "f", current)
        expected = c.call("INCRBYFLOAT", "f", step)
    value, by = LongDouble.parse(current), LongDouble.parse(step)
    if isinstance(expected, ReplyError):
        total = value.add(by) if value is not None and by is not None else None
        assert total is None, (current, step, expected)
    else:
        assert value is not None and by is not None
        total = value.add(by)
        assert total is not None and total.format_human() == expected, (current, step)


def test_random_incrbyfloat_sequences_match_redis(servers, pair):
    rng = random.Random(5)
    for _ in range(40):
        pair.run(["INCRBYFLOAT", "acc", rng.choice(["0.1", "-0.3", "1e-7", "123.456", "7",
                                                    "2.5e-17", "-1e10", "0.000001"])])


def test_set_reply_type_is_encoded_in_order():
    from redquorum.protocol.resp import encode
    assert encode(SetReply([Simple("b"), Simple("a")]), 3) == b"~2\r\n+b\r\n+a\r\n"
    assert encode(SetReply([Simple("b"), Simple("a")]), 2) == b"*2\r\n+b\r\n+a\r\n"
