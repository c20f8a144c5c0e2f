"""INFO's statistics sections (commandstats, errorstats, latencystats), CONFIG RESETSTAT
and INFO's section selection, against a real redis-server running the same commands."""

from __future__ import annotations

import re

import pytest
import redquorum
from redquorum.protocol.resp import Simple

from tests.harness import reference_and_proxy
from tests.resp_client import RawClient

COMMANDSTAT = re.compile(r"cmdstat_([a-z_|.]+):calls=(\d+),usec=(\d+),usec_per_call=(\d+\.\d\d),"
                         r"rejected_calls=(\d+),failed_calls=(\d+)")
LATENCYSTAT = re.compile(r"latency_percentiles_usec_([a-z_|.]+):p50=\d+\.\d{3},p99=\d+\.\d{3},"
                         r"p99\.9=\d+\.\d{3}")


@pytest.fixture(scope="module")
def ports(tmp_path_factory):
    with reference_and_proxy(tmp_path_factory.mktemp("infostats")) as (reference, proxy):
        yield reference, proxy.port


def info(client: RawClient, *sections: str) -> dict[str, list[str]]:
    """Section title → its lines."""
    reply = client.call("INFO", *sections)
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.split("\r\n"):
        if line.startswith("# "):
            current = found.setdefault(line[2:], [])
        elif line:
            current.append(line)
    return found


WORKLOAD = [["SET", "a", "1"], ["GET"], ["INCR", "a", "x"], ["SET", "a", "x"], ["INCR", "a"],
            ["FOO"], ["GET", "a"], ["MULTI"], ["INCR"], ["SET", "b", "1"], ["EXEC"],
            ["CONFIG", "GET"], ["CLIENT", "ID"], ["CLIENT", "ID", "x"]]


def test_statistics_sections_count_as_redis(ports):
    sections = []
    for port in ports:
        with RawClient(port) as c:
            assert c.call("CONFIG", "RESETSTAT") == Simple("OK")
            for cmd in WORKLOAD:
                c.call(*cmd)
            sections.append(info(c, "commandstats", "errorstats", "latencystats", "stats"))
    expected, got = sections
    assert list(got) == list(expected) == ["Stats", "Commandstats", "Errorstats", "Latencystats"]

    def counts(section: list[str]) -> dict[str, tuple[str, str, str]]:
        matches = [COMMANDSTAT.fullmatch(line) for line in section]
        assert all(matches), section
        return {m[1]: (m[2], m[5], m[6]) for m in matches
                if m[1] in ("set", "get", "incr", "exec", "config|resetstat", "config|get",
                            "client|id")}

    assert counts(got["Commandstats"]) == counts(expected["Commandstats"])
    assert got["Errorstats"] == expected["Errorstats"]
    assert all(LATENCYSTAT.fullmatch(line) for line in got["Latencystats"])
    latency_names = {LATENCYSTAT.fullmatch(line)[1] for line in got["Latencystats"]}
    assert {"set", "get", "incr", "exec"} <= latency_names
    assert "total_error_replies:8" in got["Stats"] and "total_error_replies:8" in expected["Stats"]


def test_resetstat_clears_the_statistics(ports):
    with RawClient(ports[1]) as c:
        c.call("GET")
        c.call("SET", "x", "1")
        assert info(c, "errorstats")["Errorstats"]
        assert c.call("CONFIG", "RESETSTAT") == Simple("OK")
        stats = info(c, "commandstats", "errorstats", "latencystats", "stats")
    assert stats["Errorstats"] == []
    assert [line.split(":")[0] for line in stats["Commandstats"]] == ["cmdstat_config|resetstat"]
    assert "total_error_replies:0" in stats["Stats"]
    assert "total_commands_processed:1" in stats["Stats"]


@pytest.mark.parametrize("sections", [[], ["default"], ["all"], ["everything"], ["server", "clients"],
                                      ["default", "commandstats"], ["CPU", "Keyspace"], ["foo"],
                                      ["server", "foo"]])
def test_section_selection_as_redis(ports, sections):
    titles = []
    for port in ports:
        with RawClient(port) as c:
            titles.append([t for t in info(c, *sections) if t != "Redquorum"])
    assert titles[1] == titles[0]


def test_noquorum_is_counted_by_its_first_word(replicas, make_proxy):
    proxy = make_proxy(replicas)
    replicas[1].kill()
    replicas[2].kill()
    with RawClient(proxy.port) as c:
        reply = c.call("SET", "k", "v")
        assert reply.text.startswith("NOQUORUM")
        stats = info(c, "errorstats", "commandstats")
    assert "errorstat_NOQUORUM:count=1" in stats["Errorstats"]
    line = next(x for x in stats["Commandstats"] if x.startswith("cmdstat_set:"))
    assert COMMANDSTAT.fullmatch(line)[2] == "1" and line.endswith("failed_calls=1")


def test_protocol_errors_are_counted(ports):
    counts = []
    for port in ports:
        with RawClient(port) as c:
            c.call("CONFIG", "RESETSTAT")
        with RawClient(port) as bad:
            bad.sock.sendall(b"*1\r\n$x\r\n")
            assert bad.read().text.startswith("ERR Protocol error")
        with RawClient(port) as c:
            counts.append(info(c, "errorstats")["Errorstats"])
    assert counts[1] == counts[0] == ["errorstat_ERR:count=1"]


def test_info_server_names_the_build_that_runs(ports) -> None:
    """The proxy process loads the same build as this one (same checkout, same
    REDQUORUM_NATIVE): compiled modules or pure Python, as proxy/__init__.py decided."""
    with RawClient(ports[1]) as c:
        server = info(c, "server")["Server"]
    assert f"redquorum_build:{'mypyc' if redquorum.NATIVE else 'python'}" in server
