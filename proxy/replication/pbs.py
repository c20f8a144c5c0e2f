"""Probabilistically Bounded Staleness: the WARS model of Bailis et al. (VLDB 2012).

Theory of operation
-------------------
A write goes to all ``n`` replicas of a key. Replica ``i`` receives it ``W_i`` after the
write starts and its ack reaches the coordinator ``A_i`` later; the write commits when
``w`` acks are in, at ``C = w-th smallest (W_i + A_i)``. A read starts ``t`` after the
commit: its request reaches replica ``i`` at ``C + t + R_i`` and the answer is back
``S_i`` later. Replica ``i`` answers with the write when the request arrives after the
write did, ``C + t + R_i >= W_i``. The read uses the first ``r`` answers, the ``r``
smallest ``R_i + S_i`` (``t`` shifts them all alike, so which ``r`` answer first does not
depend on ``t``), and is consistent when any of them has the write.

So a trial is consistent exactly when ``t >= t_min``, with
``t_min = min over the first r responders of (W_i - R_i) - C``: each trial has one
threshold, computed exactly. P(consistent at t) is the fraction of trials with
``t_min <= t`` and the t-visibility for probability ``q`` (the paper's smallest ``t``
with P(consistent at t) >= q) is the empirical ``q``-quantile of ``t_min`` taken with
the inverted-CDF rule, never below 0. With ``r + w > n`` the first responders include
a replica that acked, whose ``W_i <= C``: every ``t_min <= 0`` and P = 1 at t = 0.

Ties between responders (constant read latencies) go to the lower column; the
columns' draws are independent and identically distributed, so that is the same as
picking uniformly among them.

Nothing here does I/O but ``empirical:FILE`` reading its file when parsed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Trials are simulated in blocks of this many, so memory stays bounded (a block holds a
# few (block, n) float arrays) whatever the trial count.
BLOCK = 250_000


class SpecError(ValueError):
    """A latency distribution SPEC that does not parse or has impossible parameters."""


# -- latency distributions (milliseconds) -------------------------------------------------------

class Distribution:
    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class Exponential(Distribution):
    rate: float  # per ms

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        return rng.exponential(1.0 / self.rate, size)


@dataclass(frozen=True)
class Pareto(Distribution):
    xm: float  # the minimum, ms
    alpha: float

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        # Generator.pareto draws the Lomax (Pareto II) distribution, which starts at 0.
        return self.xm * (1.0 + rng.pareto(self.alpha, size))


@dataclass(frozen=True)
class Constant(Distribution):
    value: float

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        return np.full(size, self.value, dtype=float)


class Empirical(Distribution):
    """Resamples observed latencies (with replacement)."""

    def __init__(self, values: Sequence[float] | np.ndarray) -> None:
        self.values = np.asarray(values, dtype=float)
        if self.values.size == 0:
            raise SpecError("an empirical distribution needs at least one latency")

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        return self.values[rng.integers(0, self.values.size, size)]


@dataclass(frozen=True)
class Mixture(Distribution):
    weights: tuple[float, ...]
    parts: tuple[Distribution, ...]

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        which = rng.choice(len(self.parts), size=size, p=np.asarray(self.weights))
        out = np.empty(which.shape, dtype=float)
        for index, part in enumerate(self.parts):
            chosen = which == index
            out[chosen] = part.sample(rng, int(chosen.sum()))
        return out


_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
# A mixture splits at a '+' followed by a probability and '*' (not at the '+' of 1e+3).
_COMPONENT_START = re.compile(rf"\+(?=\s*{_NUMBER}\s*\*)")


def parse_spec(text: str) -> Distribution:
    """``exp:RATE`` | ``pareto:XM:ALPHA`` | ``const:X`` | ``empirical:FILE`` |
    ``P1*SPEC1+P2*SPEC2+...`` (probabilities summing to 1). Latencies in ms."""
    spec = text.strip()
    if not spec:
        raise SpecError("empty latency SPEC")
    if "*" not in spec or spec.lower().startswith("empirical:"):
        return _parse_simple(spec)
    weights, parts = [], []
    for component in _COMPONENT_START.split(spec):
        prob_text, star, inner = component.partition("*")
        if not star or not inner.strip():
            raise SpecError(f"mixture component {component.strip()!r} in {text!r} is not P*SPEC")
        prob = _number(prob_text, "mixture probability", text)
        if not 0 < prob <= 1:
            raise SpecError(f"mixture probability {prob_text.strip()} in {text!r} is outside (0, 1]")
        weights.append(prob)
        parts.append(_parse_simple(inner.strip()))
    if not math.isclose(sum(weights), 1.0, abs_tol=1e-9):
        raise SpecError(f"mixture probabilities in {text!r} sum to {sum(weights):g}, not 1")
    total = sum(weights)
    return Mixture(tuple(w / total for w in weights), tuple(parts))


def _parse_simple(spec: str) -> Distribution:
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "empirical":
        return _read_empirical(rest.strip())
    args = rest.split(":") if rest else []
    if kind == "exp":
        (rate,) = _args(spec, args, "RATE")
        value = _number(rate, "rate", spec)
        if not value > 0:
            raise SpecError(f"{spec!r}: the rate must be positive (per ms)")
        return Exponential(value)
    if kind == "pareto":
        xm_text, alpha_text = _args(spec, args, "XM", "ALPHA")
        xm, alpha = _number(xm_text, "XM", spec), _number(alpha_text, "ALPHA", spec)
        if not (xm > 0 and alpha > 0):
            raise SpecError(f"{spec!r}: pareto needs XM > 0 and ALPHA > 0")
        return Pareto(xm, alpha)
    if kind == "const":
        (x,) = _args(spec, args, "X")
        value = _number(x, "constant", spec)
        if value < 0:
            raise SpecError(f"{spec!r}: a latency cannot be negative")
        return Constant(value)
    raise SpecError(f"unknown distribution {kind!r} in {spec!r} "
                    "(exp:RATE, pareto:XM:ALPHA, const:X, empirical:FILE, P1*SPEC1+P2*SPEC2)")


def _args(spec: str, args: list[str], *names: str) -> list[str]:
    if len(args) != len(names):
        kind = spec.partition(":")[0]
        raise SpecError(f"{spec!r}: {kind} takes {':'.join([kind, *names])}")
    return args


def _number(text: str, what: str, spec: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise SpecError(f"{spec!r}: {what} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise SpecError(f"{spec!r}: {what} must be finite")
    return value


def _read_empirical(path: str) -> Empirical:
    if not path:
        raise SpecError("empirical:FILE needs a file name")
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise SpecError(f"empirical:{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SpecError(f"empirical:{path}: not a text file") from None
    values = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        value = _number(line, f"line {number}", f"empirical:{path}")
        if value < 0:
            raise SpecError(f"empirical:{path}: line {number} is a negative latency")
        values.append(value)
    if not values:
        raise SpecError(f"empirical:{path} holds no latencies (one number of ms per line)")
    return Empirical(values)


# -- the WARS model -------------------------------------------------------------------------------

def check_quorum(n: int, r: int, w: int) -> None:
    if n < 1:
        raise SpecError(f"n must be at least 1, got {n}")
    for name, value in (("r", r), ("w", w)):
        if not 1 <= value <= n:
            raise SpecError(f"{name}={value} is outside 1..n (n={n})")


def t_min(W: np.ndarray, A: np.ndarray, R: np.ndarray, S: np.ndarray, r: int, w: int) -> np.ndarray:
    """Per trial (row; one column per replica), the smallest ``t`` after commit at which a
    read is consistent. Negative: consistent already at the commit."""
    n = W.shape[1]
    commit = np.partition(W + A, w - 1, axis=1)[:, w - 1]
    if r == n:
        first = W - R
    else:
        responders = np.argpartition(R + S, r - 1, axis=1)[:, :r]
        first = np.take_along_axis(W - R, responders, axis=1)
    return first.min(axis=1) - commit


def simulate(n: int, r: int, w: int, W: Distribution, A: Distribution, R: Distribution,
             S: Distribution, trials: int, rng: np.random.Generator) -> np.ndarray:
    """``trials`` draws of ``t_min`` (ms), each replica's delays drawn independently."""
    check_quorum(n, r, w)
    if trials < 1:
        raise SpecError(f"trials must be at least 1, got {trials}")
    out = np.empty(trials)
    for start in range(0, trials, BLOCK):
        shape = (min(BLOCK, trials - start), n)
        out[start:start + shape[0]] = t_min(W.sample(rng, shape), A.sample(rng, shape),
                                            R.sample(rng, shape), S.sample(rng, shape), r, w)
    return out


def p_consistent(thresholds: np.ndarray, t_ms: Sequence[float]) -> list[float]:
    """P(consistent at t) for each t: the fraction of trials whose threshold is <= t."""
    ordered = np.sort(thresholds)
    counts = np.searchsorted(ordered, np.asarray(t_ms, dtype=float), side="right")
    return [float(c) / ordered.size for c in counts]


def t_visibility(thresholds: np.ndarray, quantiles: Sequence[float]) -> list[float]:
    """For each q, the smallest t >= 0 with P(consistent at t) >= q (ms)."""
    found = np.quantile(thresholds, np.asarray(quantiles, dtype=float), method="inverted_cdf")
    return [max(0.0, float(v)) for v in np.atleast_1d(found)]


# -- live estimates from round trips ----------------------------------------------------------------

def simulate_round_trips(n: int, r: int, w: int, writes: Sequence[np.ndarray],
                         reads: Sequence[np.ndarray], trials: int,
                         rng: np.random.Generator) -> np.ndarray:
    """``t_min`` draws from measured round trips (any unit; the result is in that unit).

    ``writes[j]`` and ``reads[j]`` hold replica j's write and read round trips. A proxy
    only sees round trips, so each is split evenly into its one-way legs: W = A = write
    RTT / 2 and R = S = read RTT / 2 (one RTT drawn per leg pair). Each trial's n
    columns are n distinct replicas picked at random, each drawing from its own samples.
    """
    check_quorum(n, r, w)
    usable = [j for j in range(len(writes)) if len(writes[j]) and len(reads[j])]
    if len(usable) < n:
        raise SpecError(f"latency samples from {len(usable)} replicas, n={n} needed")
    write_pool, write_start, write_len = _pool([writes[j] for j in usable])
    read_pool, read_start, read_len = _pool([reads[j] for j in usable])
    out = np.empty(trials)
    for start in range(0, trials, BLOCK):
        size = min(BLOCK, trials - start)
        replicas = np.argsort(rng.random((size, len(usable))), axis=1)[:, :n]
        half_write = _draw(rng, write_pool, write_start[replicas], write_len[replicas]) / 2
        half_read = _draw(rng, read_pool, read_start[replicas], read_len[replicas]) / 2
        out[start:start + size] = t_min(half_write, half_write, half_read, half_read, r, w)
    return out


def _pool(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.array([len(g) for g in groups])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.concatenate([np.asarray(g, dtype=float) for g in groups]), starts, lengths


def _draw(rng: np.random.Generator, pool: np.ndarray, starts: np.ndarray, lengths: np.ndarray
          ) -> np.ndarray:
    return pool[starts + (rng.random(starts.shape) * lengths).astype(np.int64)]
