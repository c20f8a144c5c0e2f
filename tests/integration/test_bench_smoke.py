"""The benchmark harness's parsing and arithmetic, on captured output (no processes started)."""

from __future__ import annotations

import pytest

from bench.profiling import function_of, parse_collapsed
from bench.report import Run, summarize
from bench.workload import BenchError, Result, Workload, parse_csv

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
