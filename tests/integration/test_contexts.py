"""Causal contexts are signed by the cluster: forged ones are refused, genuine ones work
on every proxy, across proxy restarts and replicas that lost the secret."""

from __future__ import annotations

import pytest
import redis
from redquorum.replication import clock
from redquorum.replication.contexts import SECRET_KEY, TAG_BYTES

from tests.harness import wait_for
from tests.integration.test_siblings import inspect, rq_get, rq_set


def forged(genuine: bytes, claimed: dict[bytes, int]) -> list[bytes]:
    """Contexts claiming ``claimed``: unsigned, and with the tag of a genuine context."""
    body = clock.encode_context(claimed)
    return [body, body + genuine[-TAG_BYTES:], body + b"\0" * TAG_BYTES]


def test_a_forged_huge_counter_is_refused_and_the_key_stays_writable(client):
    ctx, _ = rq_set(client, "k", "", "v")
    for context in forged(ctx, {b"r1": 2**53 - 2, b"r2": 2**53 - 2, b"r3": 2**53 - 2}):
        with pytest.raises(redis.ResponseError, match="^redquorum: invalid context"):
            client.execute_command("RQ.SET", "k", context, "bricked")
        with pytest.raises(redis.ResponseError, match="^redquorum: invalid context"):
            client.execute_command("RQ.DEL", "k", context)
    assert client.set("k", "a") is True
    assert client.delete("k") == 1
    assert rq_set(client, "k", "", "b")[1] == {"b"}
    assert all(int(part.split(b":")[1]) < 100
               for e in inspect(client, "k") for part in e["clock"].split(b",") if part)


def test_a_forged_context_of_many_actors_is_refused(client):
    ctx, _ = rq_set(client, "k", "", "v")
    invented = {b"actor-%05d" % i: 1 for i in range(4096)}
    for context in forged(ctx, invented):
        assert len(context) > 24_000
        with pytest.raises(redis.ResponseError, match="invalid context"):
            client.execute_command("RQ.SET", "k", context, "v2")
    assert all(len(e["clock"].split(b",")) == 1 for e in inspect(client, "k"))


def test_a_context_is_bound_to_its_key(client):
    ctx, _ = rq_set(client, "a", "", "v")
    rq_set(client, "b", "", "v")
    with pytest.raises(redis.ResponseError, match="invalid context"):
        client.execute_command("RQ.SET", "b", ctx, "w")
    assert rq_set(client, "a", ctx, "w")[1] == {"w"}


def test_a_context_from_one_proxy_works_on_another(replicas, make_proxy):
    one, other = make_proxy(replicas).client(), make_proxy(replicas).client()
    rq_set(one, "cart", "", "milk")
    rq_set(other, "cart", "", "eggs")
    seen, values = rq_get(one, "cart")
    assert values == {"milk", "eggs"}
    ctx, values = rq_set(other, "cart", seen, "milk,eggs")
    assert values == {"milk,eggs"}
    assert other.execute_command("RQ.DEL", "cart", ctx) == 1
    assert {replicas.raw(r.id).get(SECRET_KEY) for r in replicas} != {None}
    assert len({replicas.raw(r.id).get(SECRET_KEY) for r in replicas}) == 1


def test_contexts_survive_a_proxy_restart(replicas, make_proxy):
    first = make_proxy(replicas)
    c = first.client()
    rq_set(c, "k", "", "a")
    rq_set(c, "k", "", "b")
    seen, _ = rq_get(c, "k")
    c.close()
    first.stop()
    again = make_proxy(replicas).client()
    assert rq_set(again, "k", seen, "resolved")[1] == {"resolved"}


def test_a_replica_that_lost_the_secret_gets_it_back(replicas, make_proxy):
    """A replica restarted empty (flushed here) gets the secret from the proxies, and a
    proxy starting meanwhile adopts the one the other replicas hold."""
    c = make_proxy(replicas).client()
    seen, _ = rq_set(c, "k", "", "a")
    secret = replicas.raw("r2").get(SECRET_KEY)
    replicas.raw("r1").flushall()
    late = make_proxy(replicas).client()
    assert rq_set(late, "k", seen, "b")[1] == {"b"}
    wait_for(lambda: replicas.raw("r1").get(SECRET_KEY) == secret, what="r1 to get the secret back")
    ctx, _ = rq_get(late, "k")
    assert rq_set(c, "k", ctx, "c")[1] == {"c"}


def test_a_configured_secret_is_shared_by_the_proxies_and_kept_off_the_replicas(
        replicas, make_proxy, tmp_path):
    config = tmp_path / "proxy.toml"
    config.write_text('[proxy]\ncontext_secret = "correct horse battery staple"\n')
    one = make_proxy(replicas, extra=["--config", str(config)]).client()
    other = make_proxy(replicas, extra=["--config", str(config)]).client()
    seen, _ = rq_set(one, "k", "", "a")
    assert rq_set(other, "k", seen, "b")[1] == {"b"}
    assert {replicas.raw(r.id).get(SECRET_KEY) for r in replicas} == {None}
    stranger = make_proxy(replicas).client()  # a secret of its own, on the replicas
    with pytest.raises(redis.ResponseError, match="invalid context"):
        rq_set(stranger, "k", seen, "c")
