"""Probabilistically Bounded Staleness: the WARS model against a closed form and its
invariants, SPEC parsing, ``redquorum pbs``, settings, and the links' round-trip sampling."""

from __future__ import annotations

import json
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
from redquorum.cli import main
from redquorum.config import ConfigError, Replica, build, load
from redquorum.replication import pbs
from redquorum.replication.counters import RoundTripSamples

ZERO = pbs.Constant(0.0)


def closed_form(n: int, r: int, w: int, rate: float, t: float) -> float:
    """P(consistent at t) for W_i ~ Exp(rate) and A = R = S = 0.

    The write commits at the w-th smallest W_i, and memorylessness makes each of the other
    n - w replicas receive the write within t after that independently, with probability
    1 - exp(-rate t). With R = S = 0 all answers arrive together, so the read takes r
    replicas uniformly at random: it misses the write only if all r are among the n - w that
    had not acked (probability C(n-w, r) / C(n, r)) and none of them got the write by t.
    """
    return 1 - math.comb(n - w, r) / math.comb(n, r) * math.exp(-rate * t * r)


def exponential_writes(n: int, r: int, w: int, rate: float, trials: int, seed: int = 7) -> np.ndarray:
    return pbs.simulate(n, r, w, pbs.Exponential(rate), ZERO, ZERO, ZERO, trials,
                        np.random.default_rng(seed))


@pytest.mark.parametrize(("n", "r", "w"), [(3, 1, 1), (5, 1, 2), (5, 2, 2), (3, 1, 2), (6, 2, 3)])
def test_exponential_writes_match_the_closed_form(n, r, w):
    trials, rate = 200_000, 0.25
    thresholds = exponential_writes(n, r, w, rate, trials)
    times = [0.0, 0.5, 1.0, 2.0, 5.0, 10.0]
    for t, p in zip(times, pbs.p_consistent(thresholds, times), strict=True):
        expected = closed_form(n, r, w, rate, t)
        sigma = math.sqrt(expected * (1 - expected) / trials)
        assert abs(p - expected) <= 5 * sigma + 1e-12, (t, p, expected)
    # The t-visibility inverts the same curve: P(consistent at the q-quantile) ≈ q.
    for q, t in zip([0.9, 0.99], pbs.t_visibility(thresholds, [0.9, 0.99]), strict=True):
        if closed_form(n, r, w, rate, 0.0) < q:
            assert abs(closed_form(n, r, w, rate, t) - q) < 0.005, (q, t)
        else:
            assert t == 0.0


def test_threshold_of_single_trials_by_hand():
    # Three replicas, w = 2, r = 1. Write arrivals W and acks A: W + A = (3, 5, 10),
    # commit at 5. The first responder by R + S is replica 3 (R=1, S=1): it sees the write
    # once C + t + R >= W, i.e. t >= 10 - 5 - 1 = 4.
    W = np.array([[1.0, 4.0, 10.0], [1.0, 4.0, 10.0]])
    A = np.array([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    R = np.array([[5.0, 5.0, 1.0], [0.5, 5.0, 1.0]])
    S = np.array([[5.0, 5.0, 1.0], [0.5, 5.0, 1.0]])
    got = pbs.t_min(W, A, R, S, r=1, w=2)
    # Second trial: replica 1 answers first and acked before the commit: 1 - 5 - 0.5.
    assert got.tolist() == [4.0, -4.5]
    # r = 2 in the first trial: replicas 3 and 1 (R + S = 2 and 10) answer first.
    assert pbs.t_min(W[:1], A[:1], R[:1], S[:1], r=2, w=2).tolist() == [1.0 - 5.0 - 5.0]
    assert pbs.p_consistent(got, [-5, -4.5, 0, 3.9, 4]) == [0.0, 0.5, 0.5, 0.5, 1.0]
    assert pbs.t_visibility(got, [0.5, 0.75, 1.0]) == [0.0, 4.0, 4.0]


def test_consistency_is_monotone_in_t():
    legs = [pbs.parse_spec(s) for s in ("pareto:1:1.5", "exp:0.5", "0.8*const:0.2+0.2*exp:0.05", "exp:2")]
    thresholds = pbs.simulate(5, 1, 2, *legs, 50_000, np.random.default_rng(3))
    times = list(np.linspace(0, 50, 101))
    probabilities = pbs.p_consistent(thresholds, times)
    assert all(a <= b for a, b in zip(probabilities, probabilities[1:], strict=False))
    assert probabilities[0] < 1 and probabilities[-1] > probabilities[0]
    visibility = pbs.t_visibility(thresholds, [0.5, 0.9, 0.99, 0.999])
    assert visibility == sorted(visibility)


@pytest.mark.parametrize(("n", "r", "w"), [(3, 2, 2), (3, 1, 3), (3, 3, 1), (5, 3, 3), (5, 2, 4)])
def test_overlapping_quorums_are_always_consistent(n, r, w):
    legs = [pbs.parse_spec(s) for s in ("pareto:0.5:1.1", "exp:0.01", "pareto:2:1.2", "exp:0.02")]
    thresholds = pbs.simulate(n, r, w, *legs, 20_000, np.random.default_rng(11))
    assert thresholds.max() <= 0
    assert pbs.p_consistent(thresholds, [0.0]) == [1.0]
    assert pbs.t_visibility(thresholds, [0.5, 0.999]) == [0.0, 0.0]


def test_partial_quorums_are_not():
    legs = [pbs.parse_spec(s) for s in ("exp:0.1", "exp:0.1", "exp:0.1", "exp:0.1")]
    thresholds = pbs.simulate(3, 1, 1, *legs, 20_000, np.random.default_rng(5))
    assert pbs.p_consistent(thresholds, [0.0])[0] < 0.95


def test_scaling_every_latency_scales_the_thresholds_and_quantiles():
    specs = ("pareto:1:2", "0.9*exp:0.5+0.1*const:3", "exp:2", "const:0.25")
    k = 3.5
    scaled = ("pareto:3.5:2", "0.9*exp:0.14285714285714285+0.1*const:10.5", "exp:0.5714285714285714",
              "const:0.875")
    base = pbs.simulate(5, 2, 2, *map(pbs.parse_spec, specs), 30_000, np.random.default_rng(9))
    big = pbs.simulate(5, 2, 2, *map(pbs.parse_spec, scaled), 30_000, np.random.default_rng(9))
    np.testing.assert_allclose(big, k * base, rtol=1e-9, atol=1e-12)
    quantiles = [0.5, 0.9, 0.99, 0.999]
    np.testing.assert_allclose(pbs.t_visibility(big, quantiles),
                               [k * q for q in pbs.t_visibility(base, quantiles)], rtol=1e-9)


def test_trials_are_simulated_in_blocks_without_changing_the_model(monkeypatch):
    monkeypatch.setattr(pbs, "BLOCK", 1000)
    thresholds = exponential_writes(3, 1, 1, 0.25, 20_500)
    assert thresholds.shape == (20_500,)
    p = pbs.p_consistent(thresholds, [2.0])[0]
    assert abs(p - closed_form(3, 1, 1, 0.25, 2.0)) < 5 * math.sqrt(0.25 / 20_500)


# -- SPECs ---------------------------------------------------------------------------------------

def test_specs_parse_to_their_distributions(tmp_path):
    assert pbs.parse_spec("exp:0.5") == pbs.Exponential(0.5)
    assert pbs.parse_spec(" pareto:2:1.5 ") == pbs.Pareto(2.0, 1.5)
    assert pbs.parse_spec("const:0") == pbs.Constant(0.0)
    assert pbs.parse_spec("exp:1e+3") == pbs.Exponential(1000.0)
    mixture = pbs.parse_spec("0.25*const:1+0.75*exp:2")
    assert mixture == pbs.Mixture((0.25, 0.75), (pbs.Constant(1.0), pbs.Exponential(2.0)))
    samples = tmp_path / "latencies.txt"
    samples.write_text("1.5\n\n2\n0.25\n")
    empirical = pbs.parse_spec(f"empirical:{samples}")
    assert sorted(empirical.values.tolist()) == [0.25, 1.5, 2.0]
    drawn = empirical.sample(np.random.default_rng(1), 3000)
    assert set(drawn.tolist()) == {0.25, 1.5, 2.0}


def test_distributions_draw_what_they_say():
    rng = np.random.default_rng(2)
    size = 200_000
    assert abs(pbs.parse_spec("exp:0.5").sample(rng, size).mean() - 2.0) < 0.03
    pareto = pbs.parse_spec("pareto:2:3").sample(rng, size)  # classic Pareto: minimum 2, mean 3
    assert pareto.min() >= 2.0 and abs(pareto.mean() - 3.0) < 0.05
    assert np.all(pbs.parse_spec("const:4").sample(rng, (10, 3)) == 4.0)
    mixed = pbs.parse_spec("0.3*const:1+0.7*const:5").sample(rng, size)
    assert abs((mixed == 1.0).mean() - 0.3) < 0.01 and set(np.unique(mixed)) == {1.0, 5.0}


@pytest.mark.parametrize(("spec", "message"), [
    ("", "empty"),
    ("gamma:1:2", "unknown distribution 'gamma'"),
    ("exp", "exp takes exp:RATE"),
    ("exp:1:2", "exp takes exp:RATE"),
    ("exp:fast", "rate 'fast' is not a number"),
    ("exp:0", "rate must be positive"),
    ("exp:-1", "rate must be positive"),
    ("exp:inf", "must be finite"),
    ("pareto:1", "pareto takes pareto:XM:ALPHA"),
    ("pareto:0:2", "XM > 0 and ALPHA > 0"),
    ("pareto:1:-2", "XM > 0 and ALPHA > 0"),
    ("const:-1", "cannot be negative"),
    ("const:nan", "must be finite"),
    ("0.5*exp:1+0.4*exp:2", "sum to 0.9, not 1"),
    ("1.5*exp:1", "outside (0, 1]"),
    ("x*exp:1", "mixture probability 'x' is not a number"),
    ("0.5*+0.5*exp:1", "is not P*SPEC"),
    ("0.5*exp:1+0.5*weird:1", "unknown distribution 'weird'"),
    ("empirical:", "needs a file name"),
    ("empirical:/nonexistent/latencies", "No such file"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(pbs.SpecError, match=None) as caught:
        pbs.parse_spec(spec)
    assert message in str(caught.value)


@pytest.mark.parametrize(("content", "message"), [
    ("", "holds no latencies"),
    ("1\nfast\n", "line 2 'fast' is not a number"),
    ("1\n-2\n", "line 2 is a negative latency"),
])
def test_bad_empirical_files_say_which_line(tmp_path, content, message):
    path = tmp_path / "latencies.txt"
    path.write_text(content)
    with pytest.raises(pbs.SpecError) as caught:
        pbs.parse_spec(f"empirical:{path}")
    assert message in str(caught.value)


@pytest.mark.parametrize(("n", "r", "w", "message"), [(0, 1, 1, "n must be at least 1"),
                                                       (3, 0, 1, "r=0 is outside 1..n"),
                                                       (3, 1, 4, "w=4 is outside 1..n")])
def test_bad_quorums_are_refused(n, r, w, message):
    with pytest.raises(pbs.SpecError) as caught:
        pbs.simulate(n, r, w, ZERO, ZERO, ZERO, ZERO, 10, np.random.default_rng(0))
    assert message in str(caught.value)


# -- the command line ----------------------------------------------------------------------------

def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["pbs", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_matches_the_closed_form(capsys):
    code, out, err = run_cli(capsys, "-n", "5", "-r", "1", "-w", "2", "--W", "exp:0.25", "--A", "const:0",
                             "--R", "const:0", "--S", "const:0", "--t", "0,2,10", "--trials", "200000",
                             "--seed", "4", "--quantiles", "0.9,0.99", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["t_ms"] == [0.0, 2.0, 10.0]
    assert set(report["quantiles_ms"]) == {"0.9", "0.99"}
    for t, p in zip(report["t_ms"], report["p_consistent"], strict=True):
        assert abs(p - closed_form(5, 1, 2, 0.25, t)) < 0.006
    # 1 - 0.6 exp(-t/4) = q  →  t = 4 ln(0.6 / (1 - q))
    assert report["quantiles_ms"]["0.9"] == pytest.approx(4 * math.log(6), rel=0.03)
    assert report["quantiles_ms"]["0.99"] == pytest.approx(4 * math.log(60), rel=0.03)


def test_cli_is_repeatable_with_a_seed_and_prints_a_table(capsys):
    args = ["--W", "pareto:1:2", "--A", "exp:1", "--R", "exp:1", "--S", "exp:1", "-r", "1", "-w", "1",
            "--seed", "12", "--trials", "20000", "--t", "0,1,5"]
    first = run_cli(capsys, *args, "--json")[1]
    assert run_cli(capsys, *args, "--json")[1] == first
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    report = json.loads(first)
    assert "n=3 r=1 w=1, 20000 trials" in out
    for t, p in zip(report["t_ms"], report["p_consistent"], strict=True):
        assert f"{t:g}  {p:.6f}" in out
    assert "0.999" in out and "t-visibility" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--W", "exp:1", "--A", "exp:1", "--R", "exp:1"], "give --S"),
    (["--W", "exp:1", "--A", "exp:1", "--R", "exp:1", "--S", "bogus:1"], "unknown distribution 'bogus'"),
    (["--W", "const:1", "--A", "const:1", "--R", "const:1", "--S", "const:1", "-r", "4"], "r=4 is outside"),
    (["--W", "const:1", "--A", "const:1", "--R", "const:1", "--S", "const:1", "--t", "a,b"], "--t takes"),
    (["--W", "const:1", "--A", "const:1", "--R", "const:1", "--S", "const:1", "--t", "-1"], "--t takes"),
    (["--W", "const:1", "--A", "const:1", "--R", "const:1", "--S", "const:1", "--quantiles", "1.5"],
     "--quantiles takes"),
    (["--W", "const:1", "--A", "const:1", "--R", "const:1", "--S", "const:1", "--trials", "0"],
     "trials must be at least 1"),
    (["--live"], "--live needs --metrics-url"),
    (["--live", "--metrics-url", "http://127.0.0.1:1/metrics", "--W", "exp:1"], "give no SPECs"),
])
def test_cli_errors_are_one_line_and_exit_2(capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and not out
    assert err.startswith("redquorum pbs: ") and message in err and err.count("\n") == 1


def test_a_million_trials_run(capsys):
    code, out, _ = run_cli(capsys, "--W", "pareto:1:1.5", "--A", "exp:1", "--R", "exp:1", "--S", "exp:1",
                           "-r", "1", "-w", "1", "--trials", "1000000", "--seed", "1", "--json")
    assert code == 0
    assert all(0 < p <= 1 for p in json.loads(out)["p_consistent"])


# -- configuration and the round-trip samples --------------------------------------------------------

REPLICAS = [Replica("a", "127.0.0.1", 1)]


def test_pbs_settings_from_toml_environment_and_flags(tmp_path):
    assert build({}, REPLICAS).pbs_t_ms == (0.0, 1.0, 5.0, 10.0, 100.0)
    assert build({}, REPLICAS).pbs_interval == 10.0
    path = tmp_path / "redquorum.toml"
    path.write_text('[proxy]\npbs_t_ms = [50, 2.5]\npbs_interval = 3\n'
                    '[[replicas]]\nid = "a"\naddress = "127.0.0.1:1"\n')
    from_file = load({}, environ={}, config_file=str(path))
    assert (from_file.pbs_t_ms, from_file.pbs_interval) == ((2.5, 50.0), 3.0)
    from_env = load({}, environ={"REDQUORUM_PBS_T_MS": "7, 1"}, config_file=str(path))
    assert from_env.pbs_t_ms == (1.0, 7.0)
    from_flag = load({"pbs_t_ms": "3", "pbs_interval": 0.5}, environ={"REDQUORUM_PBS_T_MS": "7"},
                     config_file=str(path))
    assert (from_flag.pbs_t_ms, from_flag.pbs_interval) == ((3.0,), 0.5)


@pytest.mark.parametrize(("raw", "message"), [
    ({"pbs_t_ms": "soon"}, "pbs_t_ms must be a number"),
    ({"pbs_t_ms": ""}, "must list 1 to 32 times"),
    ({"pbs_t_ms": "-1"}, "must list 1 to 32 times"),
    ({"pbs_t_ms": 5}, "must be a list of milliseconds"),
    ({"pbs_interval": "0"}, "pbs_interval=0.0 is outside"),
])
def test_bad_pbs_settings_are_refused(raw, message):
    with pytest.raises(ConfigError) as caught:
        build(raw, REPLICAS)
    assert message in str(caught.value)


def test_round_trip_rings_are_bounded_and_gaps_average_every():
    samples = RoundTripSamples(seed=1)
    for i in range(3 * RoundTripSamples.SIZE):
        samples.writes.append(float(i))
    assert len(samples.writes) == RoundTripSamples.SIZE and samples.writes[-1] == 3 * RoundTripSamples.SIZE - 1
    gaps = [samples.next_gap() for _ in range(20_000)]
    assert min(gaps) == 1 and max(gaps) == 2 * RoundTripSamples.EVERY - 1
    assert abs(np.mean(gaps) - RoundTripSamples.EVERY) < 0.2


def test_links_sample_reads_and_writes_of_an_alternating_stream():
    """Regression: with a fixed gap between samples, a link answering SET, GET, SET, GET…
    recorded only one of the two (every 8th reply always fell on the same kind)."""
    from redquorum.server.links import Flusher, ReplicaLink, _GetGroup
    from redquorum.server.reactor import Reactor

    flusher = Flusher()
    link = ReplicaLink("r1", "127.0.0.1", 1, flusher=flusher, timeout=1.0, library=b"",
                       reactor=Reactor(flusher))
    group = _GetGroup()
    group.callbacks.append(lambda tag, reply: None)
    group.tags.append(None)

    def write_acked(reply):
        pass

    replies = 20_000
    queued = time.monotonic()
    for i in range(replies):
        link._pending.append((group.deliver if i % 2 else write_acked, queued))
    link._deliver(b"+OK\r\n" * replies)
    reads, writes = len(link.round_trips.reads), len(link.round_trips.writes)
    expected = replies / RoundTripSamples.EVERY / 2
    assert 0.7 * expected < reads < 1.3 * expected
    assert 0.7 * expected < writes < 1.3 * expected


def test_round_trips_give_the_closed_form_through_the_live_model():
    # Read round trips of 0 and write round trips 2 Exp(rate): W = A = Exp(rate), R = S = 0.
    # Then commit = w-th smallest 2 W_i, and the closed form holds with the rate of W.
    rng = np.random.default_rng(8)
    rate = 0.5
    writes = [2 * rng.exponential(1 / rate, 400_000) for _ in range(4)]
    reads = [np.zeros(10) for _ in range(4)]
    thresholds = pbs.simulate_round_trips(3, 1, 1, writes, reads, 200_000, np.random.default_rng(6))
    for t, p in zip([0.0, 1.0, 4.0], pbs.p_consistent(thresholds, [0.0, 1.0, 4.0]), strict=True):
        # A replica holds the write at C + t when W_i <= C + t. C = 2 W_(1), so the first
        # replica holds it already; each other has W_i - W_(1) ~ Exp(rate) past W_(1), and must
        # arrive within W_(1) + t, itself Exp(3 rate) distributed: P(hit | other) =
        # 1 - E[exp(-rate (W_(1) + t))] = 1 - exp(-rate t) * 3 / 4.
        expected = 1 / 3 + 2 / 3 * (1 - math.exp(-rate * t) * 3 / 4)
        assert abs(p - expected) < 5 * math.sqrt(expected * (1 - expected) / 200_000) + 1e-9, (t, p, expected)
    with pytest.raises(pbs.SpecError, match="from 2 replicas, n=3 needed"):
        pbs.simulate_round_trips(3, 1, 1, writes[:2] + [np.empty(0)], reads[:3], 10, rng)


def test_live_cli_without_a_proxy_fails_cleanly(capsys):
    from redquorum.replicas.launcher import free_port

    code, out, err = run_cli(capsys, "--live", "--metrics-url", f"http://127.0.0.1:{free_port()}/metrics")
    assert code == 1 and not out and err.startswith("redquorum pbs: cannot read")


async def test_a_failed_estimate_keeps_the_last_one_and_the_loop_going(monkeypatch, caplog):
    """Regression: an exception in the worker thread's estimate ended the proxy's nursery."""
    import trio
    from redquorum import metrics

    estimate = metrics.PbsEstimate(build({"pbs_interval": 0.05}, REPLICAS))
    estimate.latest = metrics.PbsResult(p_consistent={0.0: 0.5})
    calls = []

    def failing(*args):
        calls.append(args)
        raise RuntimeError("numerical trouble")

    monkeypatch.setattr(metrics, "estimate_pbs", failing)
    with trio.move_on_after(1.0):
        await estimate.run(SimpleNamespace(links={}))
    assert len(calls) >= 2
    assert estimate.latest.p_consistent == {0.0: 0.5}
    assert "PBS estimate failed" in caplog.text
