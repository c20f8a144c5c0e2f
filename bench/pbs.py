"""PBS costs: Monte Carlo trials per second, and what round-trip sampling adds per replica reply.

    .venv/bin/python -m bench.pbs [--trials 1000000] [--rounds 7]

The reply cost is ReplicaLink._deliver over 64 pipelined "+OK" replies with empty
callbacks (the link's own share of a reply, without the coordinator's work), measured
interleaved with sampling on (one reply in RoundTripSamples.EVERY on average) and off (the
countdown never reaches zero); the minimum over rounds is reported. Asserts nothing.
"""

from __future__ import annotations

import argparse
import time
import timeit

import numpy as np
from redquorum.replication import pbs
from redquorum.server.links import ReplicaLink

REPLIES = 64


def model_seconds(n: int, r: int, w: int, trials: int) -> float:
    legs = [pbs.parse_spec(s) for s in ("pareto:1:1.5", "exp:0.5", "exp:0.5", "exp:0.5")]
    started = time.perf_counter()
    pbs.simulate(n, r, w, *legs, trials, np.random.default_rng(1))
    return time.perf_counter() - started


def reply_ns(sampling: bool, rounds: int) -> float:
    link = ReplicaLink("r1", "127.0.0.1", 1, flusher=None, timeout=1.0, library=b"", reactor=None)
    data = b"+OK\r\n" * REPLIES

    def answered(reply: object) -> None:
        pass

    def deliver() -> None:
        if not sampling:
            link._sample_in = 1 << 62
        queued = time.monotonic()
        pending = link._pending
        for _ in range(REPLIES):
            pending.append((answered, queued))
        link._deliver(data)

    best = min(timeit.repeat(deliver, number=1000, repeat=rounds))
    return best / 1000 / REPLIES * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for n, r, w in ((3, 1, 1), (5, 2, 2)):
        seconds = model_seconds(n, r, w, args.trials)
        print(f"WARS model n={n} r={r} w={w}: {args.trials} trials in {seconds:.2f} s")
    on, off = [], []
    for _ in range(args.rounds):
        off.append(reply_ns(False, 10))
        on.append(reply_ns(True, 10))
    print(f"replica reply, link's share: {min(off):.0f} ns without sampling, {min(on):.0f} ns with "
          f"(min of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
