"""Anti-entropy costs: what the digests add to a replica's write, and what a round costs.

    .venv/bin/python -m bench.antientropy [--keys 20000] [--diverged 20] [--rounds 5]

1. Replica CPU per plain SET (``rq_set``, Redis's own usec_per_call from INFO
   commandstats, pipelined), with the digest hook and with it cut out of the library,
   interleaved; the minimum over rounds is reported.
2. Three replicas holding ``--keys`` keys of which ``--diverged`` were written on one only:
   one ``redquorum repair`` round, unthrottled: its duration and the objects and digest
   fields each replica looked up.
3. The same cluster after FLUSHALL on one replica: how long a round takes to refill it.
4. Replica memory per key, with and without digests (``used_memory`` after ``--keys``
   16-byte values).

Starts its own redis-servers on free loopback ports, stops them by PID. Asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import redis
import trio
from redquorum.config import Replica, build
from redquorum.replicas.launcher import launch, stop_all
from redquorum.server.repair import run_round

LIBRARY = Path(__file__).resolve().parent.parent / "replicas" / "redquorum.lua"
HOOK = "local function aae_store(key, blob, entry)\n"
GRACE_MS = 3_600_000


def without_digests(source: str) -> str:
    if HOOK not in source:
        raise SystemExit("bench.antientropy: the digest hook is not where it expected it")
    return source.replace(HOOK, HOOK + "  if true then return end\n", 1)


def set_cost(raw: redis.Redis, source: str, keys: int) -> float:
    """µs of replica CPU per rq_set overwriting ``keys`` existing keys."""
    raw.flushall()
    raw.function_load(source, replace=True)
    now = time.time_ns() // 1000
    for phase in range(2):
        if phase:
            raw.config_resetstat()
        pipe = raw.pipeline(transaction=False)
        for i in range(keys):
            pipe.fcall("rq_set", 1, b"bench:%08d" % i, b"r1", now + i, GRACE_MS, 100, b"v%d" % phase, 0)
            if len(pipe) >= 1000:
                pipe.execute()
        pipe.execute()
    return float(raw.info("commandstats")["cmdstat_fcall"]["usec_per_call"])


def fill(raws: list[redis.Redis], keys: int) -> None:
    """The same objects on every replica: coordinated on the first, replaced on the others."""
    now = time.time_ns() // 1000
    for start in range(0, keys, 1000):
        pipe = raws[0].pipeline(transaction=False)
        for i in range(start, min(keys, start + 1000)):
            pipe.fcall("rq_set", 1, b"bench:%08d" % i, b"r1", now + i, GRACE_MS, 100, b"x" * 16, 0)
        replies = pipe.execute()
        for raw in raws[1:]:
            pipe = raw.pipeline(transaction=False)
            for i, reply in zip(range(start, start + 1000), replies, strict=False):
                pipe.fcall("rq_replace", 1, b"bench:%08d" % i, GRACE_MS, reply[0], b"", reply[3])
            pipe.execute()


def lookups(raw: redis.Redis) -> tuple[int, int]:
    stats = raw.info("commandstats")

    def calls(*names: str) -> int:
        return sum(stats.get(f"cmdstat_{n}", {}).get("calls", 0) for n in names)
    return calls("get", "mget", "scan", "type", "exists"), calls("hget", "hgetall", "hmget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--diverged", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    source = LIBRARY.read_text()
    plain = without_digests(source)
    workdir = Path(tempfile.mkdtemp(prefix="bench-aae-"))
    replicas = launch(3, workdir)
    try:
        raws = [redis.Redis(host=r.host, port=r.port) for r in replicas]
        with_hook, without = [], []
        for _ in range(args.rounds):
            without.append(set_cost(raws[0], plain, 5000))
            with_hook.append(set_cost(raws[0], source, 5000))
        print(f"rq_set replica CPU: {min(without):.1f} µs without digests, "
              f"{min(with_hook):.1f} µs with (min of {args.rounds} interleaved rounds)")

        for raw in raws:
            raw.flushall()
            raw.function_load(source, replace=True)
        fill(raws, args.keys)
        now = time.time_ns() // 1000
        for i in range(args.diverged):
            raws[0].fcall("rq_set", 1, b"bench:%08d" % (i * (args.keys // args.diverged)), b"r1",
                          now + i, GRACE_MS, 100, b"diverged", 0)
        for raw in raws:
            raw.config_resetstat()
        config = build({"n": 3, "antientropy_keys_per_second": 1e7},
                       [Replica(r.id, r.host, r.port) for r in replicas])
        stats = trio.run(run_round, config)
        print(f"{args.diverged} of {args.keys} keys diverged: round {stats.duration * 1000:.0f} ms, "
              f"{stats.keys_repaired} repairs; objects / digest fields looked up per replica: "
              + ", ".join(f"{r.id} {lookups(raw)[0]} / {lookups(raw)[1]}"
                          for r, raw in zip(replicas, raws, strict=True)))

        raws[2].flushall()
        stats = trio.run(run_round, config)
        refilled = stats.repaired.get(replicas[2].id, 0)
        print(f"a replica emptied with FLUSHALL: refilled with {refilled} keys in "
              f"{stats.duration:.1f} s ({refilled / stats.duration:.0f} keys/s)")
        per_key = {}
        for name, library in (("without", plain), ("with", source)):
            raws[0].flushall()
            raws[0].function_load(library, replace=True)
            empty = raws[0].info("memory")["used_memory"]
            fill(raws[:1], args.keys)
            per_key[name] = (raws[0].info("memory")["used_memory"] - empty) / args.keys
        print(f"replica memory per key (16-byte values): {per_key['without']:.0f} bytes without "
              f"digests, {per_key['with']:.0f} with")
        for raw in raws:
            raw.close()
    finally:
        stop_all(replicas)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
