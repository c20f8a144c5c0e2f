"""The fault harness's checkers and schedule on hand-made histories: each anomaly is found
where it is, and nothing is reported where the history is legal."""

from __future__ import annotations

import pytest

from tests.nemesis.checker import check_register, check_set
from tests.nemesis.nemesis import AMNESIA, make_schedule, parse_kinds
from tests.nemesis.workloads import Op


def op(kind, value, invoke, complete, outcome="ok", key="k", client="c"):
    return Op(client, kind, key, value, invoke, complete, outcome)


def test_set_lost_is_acknowledged_minus_final():
    ops = [op("add", "a", 0, 1), op("add", "b", 0, 1), op("add", "c", 0, 1, "unknown")]
    verdict = check_set(ops, {"k": {"a", "c"}})
    assert (verdict.acknowledged, verdict.lost, verdict.phantom) == (2, 1, 0)
    assert verdict.lost_examples == ["k/b"]
    assert check_set(ops, {"k": {"a", "b"}}).lost == 0  # an unknown add may be missing
    assert check_set(ops, {"k": {"a", "b", "z"}}).phantom == 1


def test_register_a_read_after_an_acknowledged_del_returning_the_old_value():
    ops = [op("set", "v1", 0, 1), op("del", None, 2, 3), op("get", "v1", 4, 5)]
    verdict = check_register(ops)
    assert (verdict.stale, verdict.del_undone, verdict.phantom) == (1, 1, 0)


def test_register_concurrent_del_or_read_is_legal():
    # the DEL overlaps the read: either order is linearizable
    assert check_register([op("set", "v1", 0, 1), op("del", None, 2, 5),
                           op("get", "v1", 4, 6)]).stale == 0
    # the SET overlaps the DEL
    assert check_register([op("set", "v1", 0, 2.5), op("del", None, 2, 3),
                           op("get", "v1", 4, 5)]).stale == 0


def test_register_a_failed_set_may_land_after_a_del():
    ops = [op("set", "v1", 0, 1, "unknown"), op("del", None, 2, 3), op("get", "v1", 4, 5)]
    assert check_register(ops).stale == 0


def test_register_stale_read_after_a_newer_set():
    ops = [op("set", "v1", 0, 1), op("set", "v2", 2, 3), op("get", "v1", 4, 5)]
    verdict = check_register(ops)
    assert (verdict.stale, verdict.del_undone) == (1, 0)
    assert check_register(ops[:2] + [op("get", "v2", 4, 5)]).stale == 0


def test_register_nil_after_an_acknowledged_set():
    ops = [op("set", "v1", 0, 1), op("get", None, 2, 3)]
    assert check_register(ops).stale == 1
    # a DEL that failed may have landed after the SET: nil is then possible
    assert check_register(ops + [op("del", None, 0.5, 0.6, "unknown")]).stale == 0
    # one that finished before the SET began cannot explain it
    assert check_register(ops + [op("del", None, -2, -1)]).stale == 1
    assert check_register([op("get", None, 0, 1)]).stale == 0  # never written


def test_register_phantom_value():
    verdict = check_register([op("set", "v1", 0, 1), op("get", "v9", 2, 3)])
    assert verdict.phantom == 1
    # a value is only ever read from its own key
    assert check_register([op("set", "v1", 0, 1, key="a"), op("get", "v1", 2, 3, key="b")]).phantom == 1


def test_schedule_is_a_function_of_the_seed():
    args = (parse_kinds("all"), 20.0, ["r1", "r2", "r3"], 2, 2)
    one, again, other = make_schedule(7, *args), make_schedule(7, *args), make_schedule(8, *args)
    assert one.describe() == again.describe()
    assert one.describe() != other.describe()


def test_schedule_faults_never_overlap_on_a_target_and_amnesia_hits_only_amnesiacs():
    for seed in range(20):
        schedule = make_schedule(seed, parse_kinds("all"), 30.0, ["r1", "r2", "r3", "r4", "r5"], 2, 3)
        assert len(schedule.amnesiacs) == 2
        busy: dict[str, float] = {}
        for fault in sorted(schedule.faults, key=lambda f: f.start):
            assert 0 <= fault.start < fault.end <= 30.0
            for target in fault.targets():
                assert busy.get(target, 0) <= fault.start
                busy[target] = fault.end
            if fault.kind in AMNESIA:
                assert fault.replica in schedule.amnesiacs


def test_unknown_nemesis_is_refused():
    assert parse_kinds("kill,pause,kill") == ("kill", "pause")
    with pytest.raises(ValueError, match="meteor"):
        parse_kinds("meteor")
