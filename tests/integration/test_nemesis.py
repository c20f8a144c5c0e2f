"""Short runs of the fault harness (tests/nemesis): a few seconds of seeded faults each,
against three replicas (four, and a join and a leave, in the membership run) and two
proxies with a relay on every link.

Asserted in every run: both proxies are alive and answer PING at the end, no read returns a
value nobody wrote, and the replicas converge once healed. In causal mode: no acknowledged
element of the set workload is lost, and no acknowledged DEL of the register workload is
undone. LWW's losses are printed, not asserted. A failing run prints its seed: replay it with
REDQUORUM_NEMESIS_SEED=<seed> (the schedule is printed too), or longer with
``python -m tests.nemesis``.
"""

from __future__ import annotations

import pytest

from tests.nemesis.cluster import Cluster, ClusterSpec
from tests.nemesis.runner import RunSpec, run, seed_from_environment

DURATION = 3.0

RUNS = [
    # (workload, mode, nemesis, default seed, bytes of padding per register value)
    pytest.param("set", "causal", "safe", 1, 0, id="set-causal-safe"),
    pytest.param("register", "causal", "safe", 2, 0, id="register-causal-safe"),
    pytest.param("set", "causal", "amnesia", 3, 0, id="set-causal-amnesia"),
    pytest.param("register", "causal", "amnesia", 4, 0, id="register-causal-amnesia"),
    pytest.param("set", "lww", "all", 5, 0, id="set-lww-all"),
    pytest.param("register", "lww", "net,proxy", 6, 0, id="register-lww-net"),
    # 1 MiB values fill the links' socket buffers while a replica is paused or black-holed:
    # a link fails while its writer waits for room
    pytest.param("register", "lww", "pause,blackhole", 7, 1 << 20, id="register-lww-large"),
]


@pytest.mark.slow
@pytest.mark.parametrize("workload, mode, nemesis, seed, value_bytes", RUNS)
def test_nemesis(tmp_path, workload, mode, nemesis, seed, value_bytes):
    spec = RunSpec(workload=workload, mode=mode, nemesis=nemesis,
                   seed=seed_from_environment(seed), duration=DURATION, keys=4,
                   value_bytes=value_bytes, passive_wait=3.0, converge_bound=20.0)
    result = run(spec, tmp_path)
    assert not result.proxy_deaths, result.proxy_deaths
    assert result.proxies_answer, "a proxy does not answer PING after the run"
    assert not result.nemesis_errors, result.nemesis_errors
    assert result.acknowledged > 0
    assert result.phantom == 0, result.examples
    assert result.converge.seconds is not None, \
        f"{result.converge.divergent} keys still differ across replicas"
    if mode == "causal" and workload == "set":
        assert result.lost == 0, result.examples
    if mode == "causal" and workload == "register":
        assert result.del_undone == 0, result.examples


@pytest.mark.slow
def test_nemesis_while_a_replica_joins_and_another_leaves(tmp_path):
    """Four replicas; r5 joins early, an original one (drawn from the seed) leaves from the
    middle on, through the ``redquorum`` commands, while replicas are killed, paused and cut
    off; the changes that outlast the faults finish after the heal. Then: nothing
    acknowledged lost, and every key on exactly its three homes of the final ring."""
    spec = RunSpec(workload="set", mode="causal", nemesis="kill,pause,partition",
                   seed=seed_from_environment(8), duration=6.0, replicas=4, keys=8,
                   passive_wait=3.0, converge_bound=20.0, membership=True,
                   membership_bound=90.0)
    result = run(spec, tmp_path)
    assert [c.finished is not None for c in result.changes] == [True, True], \
        [c.failures for c in result.changes]
    assert not result.proxy_deaths, result.proxy_deaths
    assert result.proxies_answer
    assert not result.nemesis_errors, result.nemesis_errors
    assert result.acknowledged > 0
    assert result.lost == 0, result.examples
    assert result.phantom == 0
    assert result.converge.seconds is not None, \
        f"{result.converge.divergent} keys still differ across replicas"
    assert result.misplaced == []
    assert result.leftover == 0


@pytest.fixture
def cluster(tmp_path):
    """Three replicas and one proxy, its links through relays (``cluster.slots[0].relays``)."""
    with Cluster(ClusterSpec(proxies=1), tmp_path) as started:
        yield started


def test_a_newer_tombstone_sibling_hides_an_older_value(cluster):
    """What the register workload found under faults, without the faults: a DEL whose
    context does not cover the value (here RQ.DEL with an empty context, as a coordinator
    that missed the SET writes it) leaves both siblings; the tombstone is newer, so a plain
    GET must answer nil, as it does after a DEL that saw the value."""
    client = cluster.proxy_client(0)
    client.execute_command("RQ.SET", "k", "", "old")
    assert client.execute_command("RQ.DEL", "k", "") == 1
    assert client.get("k") is None
    assert client.exists("k") == 0
    client.close()
