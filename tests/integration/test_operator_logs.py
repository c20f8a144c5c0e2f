"""The proxy's log: one line per state change, never one per request, in text or JSON."""

from __future__ import annotations

import json

import pytest
import redis
from redquorum.replicas.launcher import free_port

from tests.harness import wait_for

JSON_LOG = ["--log-level", "info", "--log-format", "json"]


def json_lines(proxy) -> list[dict]:
    """The JSON log lines (the start-up banner on stdout shares the file and is text)."""
    lines = proxy.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def events(proxy, name: str, **fields) -> list[dict]:
    return [e for e in json_lines(proxy) if e.get("event") == name
            and all(e.get(k) == v for k, v in fields.items())]


def test_replica_and_quorum_state_changes_and_hint_replay(replicas, make_proxy):
    proxy = make_proxy(replicas, extra=JSON_LOG)
    client = proxy.client()
    wait_for(lambda: len(events(proxy, "replica_up")) == 3, what="three replicas up")

    replicas.by_id("r3").kill()
    for i in range(150):
        client.set(f"k{i}", i)
        client.get(f"k{i}")
    down = wait_for(lambda: events(proxy, "replica_down", replica="r3"), what="r3 down")
    assert len(down) == 1 and down[0]["level"] == "warning" and down[0]["reason"]
    assert not events(proxy, "quorum_lost")  # 2 of 3 homes still answer

    replicas.by_id("r2").kill()
    for i in range(20):
        with pytest.raises(redis.ResponseError, match="NOQUORUM"):
            client.set(f"k{i}", "x")
    lost = wait_for(lambda: events(proxy, "quorum_lost") if len(events(proxy, "quorum_lost")) == 2
                    else None, what="read and write quorum lost")
    assert {e["op"] for e in lost} == {"read", "write"}
    assert all(e["keys_share"] == 1.0 and e["down"] == "r2,r3" for e in lost)

    for ident in ("r2", "r3"):
        replicas.by_id(ident).start()
        wait_for(replicas.by_id(ident).ready, what=f"{ident} to restart")
    wait_for(lambda: len(events(proxy, "quorum_regained")) == 2, what="quorums regained")
    finished = wait_for(lambda: events(proxy, "hint_replay_finished", replica="r3"), timeout=30,
                        what="r3's hint replay to finish")
    started = events(proxy, "hint_replay_started", replica="r3")
    assert len(started) == len(finished) == 1
    assert started[0]["pending"] >= 150 and finished[0]["replayed"] >= 150

    entries = json_lines(proxy)
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in entries)
    assert [e["replica"] for e in events(proxy, "replica_down")] == ["r3", "r2"]
    # 170 requests with a replica down and 20 NOQUORUMs: state changes only
    assert len(entries) < 25, [e["msg"] for e in entries]


def test_quorum_lost_from_the_start_is_logged(replicas, make_proxy):
    replicas.by_id("r2").kill()
    replicas.by_id("r3").kill()
    proxy = make_proxy(replicas, extra=JSON_LOG)
    lost = wait_for(lambda: events(proxy, "quorum_lost") if len(events(proxy, "quorum_lost")) == 2
                    else None, what="quorum lost at start-up")
    assert {e["op"] for e in lost} == {"read", "write"}


@pytest.mark.parametrize("log_keys", [False, True], ids=["hashed", "log-keys"])
def test_sibling_soft_limit_is_logged_once_per_key(replicas, make_proxy, log_keys):
    extra = ["--sibling-soft-limit", "2", "--sibling-hard-limit", "10"] + (["--log-keys"] if log_keys else [])
    proxy = make_proxy(replicas, extra=extra)
    client = proxy.client()
    for value in "abc":
        client.execute_command("RQ.SET", "account:alice", "", value)
    for _ in range(5):
        client.execute_command("RQ.GET", "account:alice")
    text = proxy.log_path.read_text()
    lines = [line for line in text.splitlines() if "above the soft limit" in line]
    assert len(lines) == 1, text
    assert "WARNING redquorum.metrics:" in lines[0]  # the text format
    assert ("account:alice" in text) is log_keys
    if not log_keys:
        assert "(length 13, hash " in lines[0]


def test_log_keys_setting_from_file_environment_and_flag(tmp_path):
    from redquorum.config import ConfigError, load

    conf = tmp_path / "redquorum.toml"
    address = f"127.0.0.1:{free_port()}"  # only read, never connected to
    conf.write_text(f'[proxy]\nlog_keys = true\n[[replicas]]\nid = "a"\naddress = "{address}"\n')
    assert load({"config": str(conf)}, environ={}).log_keys is True
    assert load({"config": str(conf)}, environ={"REDQUORUM_LOG_KEYS": "no"}).log_keys is False
    only_replica = {"REDQUORUM_REPLICAS": f"a={address}"}
    assert load({}, environ=only_replica).log_keys is False
    assert load({"log_keys": True}, environ=only_replica).log_keys is True
    with pytest.raises(ConfigError, match="log_keys must be true or false"):
        load({}, environ={**only_replica, "REDQUORUM_LOG_KEYS": "sometimes"})
