"""MULTI/EXEC/DISCARD through the proxy: nothing queued runs before EXEC, a transaction
with a queue-time error runs nothing, EXEC answers the queued commands' results in
order; every error text is compared with a real redis-server. WATCH is refused."""

from __future__ import annotations

import pytest
import redis
from redquorum.protocol.resp import ReplyError, Simple

from tests.harness import reference_and_proxy
from tests.integration.test_differential import Pair, typed
from tests.resp_client import NIL_BULK, RawClient

EXECABORT = "EXECABORT Transaction discarded because of previous errors."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with reference_and_proxy(tmp_path_factory.mktemp("transactions")) as (reference, proxy):
        yield reference, proxy


@pytest.fixture
def proxy(cluster):
    with RawClient(cluster[1].port) as c:
        assert c.call("FLUSHALL") == Simple("OK")
    return cluster[1]


@pytest.fixture
def r(proxy):
    client = proxy.client()
    yield client
    client.close()


# ---------------------------------------------------------------------------
# redis-py


def test_transactional_pipeline_succeeds_and_returns_results(r):
    assert r.pipeline().set("pa", 1).incr("pb").execute() == [True, 1]
    assert r.get("pa") == b"1"
    assert r.get("pb") == b"1"


def test_commands_of_one_exec_read_the_previous_ones_writes(r):
    pipe = r.pipeline()
    pipe.set("k", 10).incrby("k", 5).get("k").append("k", "x").get("k").delete("k").exists("k")
    assert pipe.execute() == [True, 15, b"15", 3, b"15x", 1, 0]


def test_failing_queue_leaves_nothing_written(r):
    pipe = r.pipeline()
    pipe.set("pa", 1).incr("pb").execute_command("GET")  # wrong arity: refused when queued
    with pytest.raises(redis.exceptions.ResponseError):
        pipe.execute()
    assert r.get("pa") is None
    assert r.get("pb") is None
    pipe = r.pipeline()
    pipe.set("pa", 1).execute_command("NOSUCHCOMMAND", "x")
    with pytest.raises(redis.exceptions.ResponseError):
        pipe.execute()
    assert r.get("pa") is None


def test_error_inside_exec_is_an_element_and_the_rest_runs(r):
    r.set("s", "abc")
    pipe = r.pipeline()
    pipe.set("pa", 1).incr("s").set("pb", 2)
    with pytest.raises(redis.exceptions.ResponseError):
        pipe.execute()  # redis-py raises the first error element, as with Redis
    assert r.get("pa") == b"1" and r.get("pb") == b"2"
    results = r.pipeline().set("pa", 3).incr("s").get("pa").execute(raise_on_error=False)
    assert results[0] is True and results[2] == b"3"
    assert isinstance(results[1], redis.exceptions.ResponseError)


def test_pipeline_without_transaction(r):
    pipe = r.pipeline(transaction=False)
    assert pipe.set("pa", 1).incr("pa").get("pa").execute() == [True, 2, b"2"]


def test_watch_is_refused_before_anything_runs(r):
    def body(pipe):
        pipe.multi()
        pipe.set("w", 1)

    with pytest.raises(redis.exceptions.ResponseError, match="WATCH is not supported"):
        r.transaction(body, "w")
    assert r.get("w") is None


def test_transaction_after_a_refused_watch_runs_nothing(proxy):
    with RawClient(proxy.port) as c:
        replies = c.pipeline([["WATCH", "w"], ["MULTI"], ["SET", "w", "1"], ["INCR", "x"],
                              ["EXEC"], ["GET", "w"], ["EXISTS", "x"]])
    assert isinstance(replies[0], ReplyError)
    assert replies[0].text.startswith("ERR WATCH is not supported by redquorum: ")
    assert replies[1:4] == [Simple("OK"), Simple("QUEUED"), Simple("QUEUED")]
    assert replies[4].text == EXECABORT
    assert replies[5:] == [NIL_BULK, 0]
    with RawClient(proxy.port) as c:  # the refusal does not outlive that transaction
        replies = c.pipeline([["WATCH", "w"], ["MULTI"], ["SET", "w", "1"], ["EXEC"],
                              ["MULTI"], ["SET", "w", "2"], ["EXEC"], ["GET", "w"]])
    assert typed(replies[3:]) == typed([ReplyError(EXECABORT), Simple("OK"), Simple("QUEUED"),
                                        [Simple("OK")], b"2"])


def test_unwatch_is_refused(proxy):
    with RawClient(proxy.port) as c:
        reply = c.call("UNWATCH")
        assert isinstance(reply, ReplyError) and "UNWATCH is not supported" in reply.text
        replies = c.pipeline([["MULTI"], ["SET", "u", "1"], ["UNWATCH"], ["EXEC"], ["GET", "u"]])
    assert typed(replies[3:]) == typed([ReplyError(EXECABORT), NIL_BULK])


# ---------------------------------------------------------------------------
# raw protocol


def test_nothing_queued_runs_before_exec(proxy):
    with RawClient(proxy.port) as c, RawClient(proxy.port) as other:
        assert c.call("MULTI") == Simple("OK")
        assert c.call("SET", "q", "1") == Simple("QUEUED")
        assert c.call("INCR", "q") == Simple("QUEUED")
        assert other.call("GET", "q") is NIL_BULK
        listed = other.call("CLIENT", "LIST").decode()
        assert "flags=x db=0 sub=0 psub=0 ssub=0 multi=2 " in listed  # as Redis shows it
        assert c.call("EXEC") == [Simple("OK"), 2]
        assert other.call("GET", "q") == b"2"


def test_closed_connection_discards_the_queue(proxy):
    with RawClient(proxy.port) as c:
        assert c.pipeline([["MULTI"], ["SET", "q", "1"]]) == [Simple("OK"), Simple("QUEUED")]
    with RawClient(proxy.port) as c:
        assert c.call("EXEC").text == "ERR EXEC without MULTI"
        assert c.call("GET", "q") is NIL_BULK


def test_commands_after_exec_in_one_read_see_its_writes(proxy):
    with RawClient(proxy.port) as c:
        replies = c.pipeline([["SET", "a", "1"], ["MULTI"], ["INCR", "a"], ["INCR", "a"],
                              ["EXEC"], ["GET", "a"], ["INCR", "a"], ["GET", "a"]])
    assert replies == [Simple("OK"), Simple("OK"), Simple("QUEUED"), Simple("QUEUED"), [2, 3],
                       b"3", 4, b"4"]


# every reply, error texts included, as a real redis-server answers
SEQUENCES = [
    [["EXEC"], ["DISCARD"], ["MULTI"], ["MULTI"], ["SET", "a", "1"], ["EXEC"], ["GET", "a"]],
    [["MULTI"], ["WATCH", "a"], ["SET", "a", "1"], ["EXEC"]],
    [["MULTI"], ["GET"], ["SET", "a", "1"], ["EXEC"], ["GET", "a"], ["EXEC"]],
    [["MULTI"], ["FOO", "x"], ["SET", "a", "1"], ["EXEC"], ["GET", "a"]],
    [["MULTI"], ["SET", "a", "1"], ["DISCARD"], ["GET", "a"], ["DISCARD"], ["EXEC"]],
    [["MULTI"], ["SET", "a", "1"], ["RESET"], ["EXEC"], ["GET", "a"]],
    [["MULTI"], ["EXEC"], ["MULTI"], ["EXEC", "x"], ["EXEC"]],
    [["MULTI"], ["DISCARD", "x"], ["SET", "a", "1"], ["EXEC"], ["GET", "a"]],
    [["MULTI"], ["MULTI", "x"], ["EXEC"]],
    [["MULTI"], ["CLIENT", "FOO"], ["EXEC"], ["MULTI"], ["SELECT", "0", "1"], ["EXEC"]],
    [["SET", "s", "abc"], ["MULTI"], ["SET", "a", "1"], ["INCR", "s"], ["GET", "a"],
     ["SET", "a", "2", "BADOPTION"], ["INCRBYFLOAT", "a", "0.5"], ["GETDEL", "a"], ["GET", "nothing"],
     ["MGET", "a", "s"], ["PING"], ["ECHO", "e"], ["EXEC"]],
    [["MULTI"], ["SET", "a", "1", "EX", "100"], ["TTL", "a"], ["RENAME", "a", "b"], ["EXISTS", "a", "b"],
     ["KEYS", "*"], ["FLUSHALL"], ["DBSIZE"], ["EXEC"], ["DBSIZE"]],
    [["MULTI"], ["SET", "a", "1"], ["MULTI"], ["INCR", "a"], ["EXEC"]],
]


@pytest.mark.parametrize("sequence", SEQUENCES, ids=[f"seq{i}" for i in range(len(SEQUENCES))])
@pytest.mark.parametrize("protocol", [2, 3])
def test_same_replies_as_redis(cluster, protocol, sequence):
    Pair((cluster[0], cluster[1].port)).compare_sequence(protocol, sequence)


def test_same_replies_as_redis_pipelined(cluster):
    """The whole of a transaction in one write, as drivers send it."""
    commands = [["SET", "a", "1"], ["MULTI"], ["INCR", "a"], ["GET"], ["EXEC"], ["MULTI"],
                ["INCR", "a"], ["APPEND", "a", "x"], ["INCR", "a"], ["EXEC"], ["GET", "a"],
                ["EXEC"], ["DISCARD"]]
    with RawClient(cluster[0]) as ref, RawClient(cluster[1].port) as ours:
        ref.call("FLUSHALL")
        ours.call("FLUSHALL")
        assert typed(ours.pipeline(commands)) == typed(ref.pipeline(commands))
