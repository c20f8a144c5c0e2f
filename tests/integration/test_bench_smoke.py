"""The benchmark harness's parsing and arithmetic on captured output, the Dynomite cluster's
generated configuration, and (with a dynomite binary) a tiny run against Dynomite."""

from __future__ import annotations

import os

import pytest
import yaml

from bench import dynomite
from bench.procs import Fleet, StartError
from bench.profiling import function_of, parse_collapsed
from bench.report import Run, summarize
from bench.resp import Client
from bench.run import parse_args, run_one
from bench.workload import BenchError, Result, Settings, Workload, parse_csv
from tests.harness import wait_for

# redis-benchmark 7.0 --csv against a proxy: the CONFIG warning comes first.
CAPTURED = """WARNING: Could not fetch server CONFIG
"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","8810.57","5.602","0.584","5.407","9.239","11.367","17.311"
"GET","9708.74","5.088","0.536","4.655","8.799","12.015","54.527"
"""


def test_parse_csv_rows_and_latencies() -> None:
    rows = parse_csv(CAPTURED)
    assert set(rows) == {"SET", "GET"}
    assert rows["SET"] == Result(8810.57, 5.602, 0.584, 5.407, 9.239, 11.367, 17.311)
    assert rows["GET"].p99_ms == 12.015


def test_parse_csv_rejects_output_without_latencies() -> None:
    with pytest.raises(BenchError):
        parse_csv('"SET","8810.57"\n')
    with pytest.raises(BenchError):
        parse_csv('"test","rps"\n"SET","8810.57"\n')


def test_collapsed_stacks_own_and_total_time() -> None:
    text = ("process 1:\"python\";main (proxy/cli.py:10);_flush (proxy/backend.py:151) 6\n"
            "process 1:\"python\";main (proxy/cli.py:10);_flush (proxy/backend.py:152) 2\n"
            "process 1:\"python\";main (proxy/cli.py:12) 2\n")
    profile = parse_collapsed(text)
    assert profile.samples == 10
    assert profile.own == [("_flush (proxy/backend.py)", 8), ("main (proxy/cli.py)", 2)]
    assert dict(profile.total)["main (proxy/cli.py)"] == 10
    assert function_of("f (a/b.py:3)") == "f (a/b.py)"


def test_summary_medians_and_ratios() -> None:
    w = Workload("set", 1)

    def run(target: str, rps: float, round_no: int) -> Run:
        return Run(round_no, target, w, 1.0, Result(rps, 1, 1, 1, 1, 2, 3), cpu_us_per_op=10.0)

    runs = [run("raw", r, i) for i, r in enumerate((100, 300, 200))]
    runs += [run("redquorum", r, i) for i, r in enumerate((50, 40, 60))]
    runs.append(Run(3, "redquorum", w, 1.0, error="timed out"))
    (entry,) = summarize(runs, [w], ["raw", "redquorum"])
    assert entry["targets"]["raw"]["rps"] == 200
    assert entry["targets"]["redquorum"]["rounds"] == 3
    assert entry["ratios"]["redquorum/raw"] == pytest.approx(0.25)


# ---------------------------------------------------------------------------
# Dynomite: the generated cluster configuration always; a tiny live run when a dynomite
# binary is at hand ($DYNOMITE or `dynomite` on PATH; bench/README.md says how to build one).


def _three_nodes() -> list[dynomite.Node]:
    return [dynomite.Node(rack, token, 7000 + i, 8000 + i, 9000 + i, 6000 + i)
            for i, (rack, token) in enumerate(zip(dynomite.RACKS, dynomite.TOKENS, strict=True))]


def test_dynomite_configs_three_racks_full_copies_at_quorum() -> None:
    nodes = _three_nodes()
    configs = [yaml.safe_load(text)["dyn_o_mite"] for text in dynomite.cluster_configs(nodes)]
    assert {c["datacenter"] for c in configs} == {"dc1"}
    assert [c["rack"] for c in configs] == ["rack1", "rack2", "rack3"]
    assert len({c["tokens"] for c in configs}) == 3
    for node, conf in zip(nodes, configs, strict=True):
        assert conf["listen"] == f"127.0.0.1:{node.port}"
        assert conf["dyn_listen"] == f"127.0.0.1:{node.peer_port}"
        assert conf["stats_listen"] == f"127.0.0.1:{node.stats_port}"
        assert conf["servers"] == [f"127.0.0.1:{node.redis_port}:1"]  # its own redis-server only
        assert conf["data_store"] == 0  # redis
        assert conf["read_consistency"] == conf["write_consistency"] == "DC_QUORUM"
    # Every node is seeded with the two others, as each announces itself.
    announced = {f"127.0.0.1:{c['dyn_listen'].split(':')[1]}:{c['rack']}:{c['datacenter']}:{c['tokens']}"
                 for c in configs}
    for conf in configs:
        own = f"127.0.0.1:{conf['dyn_listen'].split(':')[1]}:{conf['rack']}:dc1:{conf['tokens']}"
        assert set(conf["dyn_seeds"]) == announced - {own}


def test_dynomite_plan_uses_distinct_ports_and_needs_three_servers() -> None:
    nodes = dynomite.plan([6001, 6002, 6003])
    ports = [p for n in nodes for p in (n.port, n.peer_port, n.stats_port)]
    assert len(set(ports)) == len(ports)
    assert [n.redis_port for n in nodes] == [6001, 6002, 6003]
    with pytest.raises(ValueError):
        dynomite.plan([6001, 6002])


def test_dynomite_target_follows_the_binary(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dynomite here
    assert "dynomite" not in parse_args([]).targets
    with pytest.raises(SystemExit):
        parse_args(["--targets", "raw,dynomite"])
    with pytest.raises(SystemExit):
        parse_args(["--dynomite", str(tmp_path / "missing")])
    fake = tmp_path / "dynomite"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    opts = parse_args([])
    assert opts.targets == ["raw", "twemproxy", "redquorum", "dynomite"]
    assert opts.dynomite == str(fake)


def _dynomite_binary() -> str | None:
    try:
        return dynomite.find_binary(os.environ.get("DYNOMITE"))
    except StartError:
        return None


@pytest.mark.slow
@pytest.mark.skipif(_dynomite_binary() is None,
                    reason="no dynomite binary on this machine ($DYNOMITE or PATH): Debian does not package "
                           "it, so the test command cannot install it; the "
                           "configuration it would run is checked by "
                           "test_dynomite_configs_three_racks_full_copies_at_quorum")
def test_dynomite_target_runs_a_tiny_workload() -> None:
    settings = Settings(requests=2000, clients=10, data_size=16, keyspace=1000)
    with Fleet() as fleet:
        target, nodes = dynomite.start(fleet, _dynomite_binary())
        assert dynomite.consistency(nodes[0]) == "Read Consistency: DC_QUORUM Write Consistency: DC_QUORUM"
        with Client(target.port) as client:
            assert client.call("SET", "smoke:key", "v") == b"OK"
        for node in nodes:  # each rack's redis-server holds a copy
            wait_for(lambda n=node: _get(n.redis_port, "smoke:key") == b"v", what=f"the copy in {node.rack}")
        assert len(target.front_pids) == 3 and len(target.backend_pids) == 3
        for workload in (Workload("set", 1), Workload("get", 16)):
            entry = run_one(target, workload, settings, 1)
            assert entry.error is None and entry.result is not None and entry.result.rps > 0
            assert entry.cpu_us_per_op is not None and entry.backend_cpu_us_per_op is not None


def _get(port: int, key: str) -> bytes | None:
    with Client(port) as client:
        return client.call("GET", key)
