"""Replica CPU per write call: one FCALL per write against batches of them (``rq_many``).

    .venv/bin/python -m bench.replica_writes [--keys 100000] [--writes 20000] [--rounds 3]
                                             [--batches 1,16,128] [--listpack-entries N]
                                             [--empty] [--baseline FILE]

One redis-server with the replicas' settings (replicas/redis.conf, AOF included) holds
``--keys`` objects written through the library, so the anti-entropy digests hold them too.
Each cell is the replica's CPU time (utime + stime from /proc) per call, over ``--writes``
calls on random existing keys, for the two calls of a plain SET's path: ``rq_set`` (the
coordinating home) and ``rq_replace`` (each other home, the fast path where it holds what
the coordinator held, with the digest entry the coordinator returned; ``rq_replace~`` the
same without it, so each home hashes the object again). ``batch 1`` sends
every call as its own FCALL, pipelined; ``batch B`` sends them as ``rq_many`` calls of B
entries, with the proxy's crc32 of each key, as a replica link does with the writes one
reactor pass queues for it. The same with the digest hook cut out of the library shows the
hook's share. Rounds are interleaved, each starting with another server; each cell is the
minimum over them.
``--empty`` adds a server whose ``rq_set`` and ``rq_replace`` return at once, after its
fill: the floor of a call with those arguments. ``--listpack-entries N`` adds a server with
the digests and ``hash-max-listpack-entries N`` (the digests' partition hashes hold about
25 entries each at 100,000 keys). The memory each server grew by per key is printed too. ``--baseline FILE``
adds a server running another build of the library (say ``git show
main:replicas/redquorum.lua``), so a change is measured against it in the same interleaved
rounds. Starts its own redis-servers on free loopback ports and stops them by PID.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import socket
import tempfile
from pathlib import Path

import hiredis
import redis
from redquorum.replicas.launcher import LocalReplica, launch, stop_all
from redquorum.replication import wire

LIBRARY = Path(__file__).resolve().parent.parent / "replicas" / "redquorum.lua"
HOOK = "local function aae_store(key, blob, entry)\n"
GRACE_MS = 3_600_000
PAYLOADS = wire.Payloads(mode="causal", grace_ms=GRACE_MS, hard_limit=100, actors=[b"r1"])
CHUNK = 200  # requests per write to the socket
KINDS = ("rq_set", "rq_replace", "rq_replace~")


def empty_writes(source: str) -> str:
    """The library with rq_set and rq_replace returning at once: what a call with their
    arguments costs before the function does anything (Redis's parsing, the FCALL, rq_many's
    dispatch, the reply)."""
    for head in ("local function set(keys, args)\n", "local function replace(keys, args)\n"):
        if head not in source:
            raise SystemExit(f"bench.replica_writes: {head.strip()} is not where it expected it")
        source = source.replace(head, head + "  if true then return 0 end\n", 1)
    return source


def without_digests(source: str) -> str:
    if HOOK not in source:
        raise SystemExit("bench.replica_writes: the digest hook is not where it expected it")
    return source.replace(HOOK, HOOK + "  if true then return end\n", 1)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send(port: int, payloads: list[bytes]) -> None:
    """Send ``payloads`` pipelined, CHUNK at a time, and read every reply; stop on an error."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for start in range(0, len(payloads), CHUNK):
            chunk = payloads[start:start + CHUNK]
            sock.sendall(b"".join(chunk))
            reader = hiredis.Reader()
            got = 0
            while got < len(chunk):
                reader.feed(sock.recv(1 << 20))
                while (reply := reader.gets()) is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        raise SystemExit(f"bench.replica_writes: {reply}")
                    got += 1


def batched(calls: list[wire.Call], size: int) -> list[bytes]:
    if size == 1:
        return [bytes(call) for call in calls]
    groups = [calls[i:i + size] for i in range(0, len(calls), size)]
    return [wire.many([c.entry for c in group], sum(c.width for c in group)) for group in groups]


def key_name(i: int) -> bytes:
    return b"key:%012d" % i


def fill(server: LocalReplica, keys: int) -> None:
    """``keys`` objects, then every partition's root asked for once, as an anti-entropy
    round does: the roots a replica keeps in memory are then current through every write."""
    op = wire.set_value(b"y" * 16)
    send(server.port, batched([PAYLOADS.put(key_name(i), b"r1", b"*", op) for i in range(keys)], 64))
    send(server.port, [bytes(wire.aae_roots(first, 1024)) for first in range(0, 4096, 1024)])


def digest_entry(key: bytes, blob: bytes) -> bytes:
    """The entry the coordinator's rq_set returns for ``blob`` and the proxy passes on."""
    return hashlib.sha1(b"%d:" % len(key) + key + blob).hexdigest()[:12].encode()


def writes(raw: redis.Redis, kind: str, keys: int, count: int) -> list[wire.Call]:
    chosen = [key_name(random.randrange(keys)) for _ in range(count)]
    if kind == "rq_set":
        op = wire.set_value(b"x" * 16)
        return [PAYLOADS.put(key, b"r1", b"*", op) for key in chosen]
    distinct = list(set(chosen))
    held = dict(zip(distinct, raw.mget(distinct), strict=True))
    calls = []
    for key in chosen:  # a new object of the same shape where the home holds the old one
        old = held[key]
        new = old[:-3] + b"%03d" % random.randrange(1000)
        held[key] = new
        entry = digest_entry(key, new) if kind == "rq_replace" else None  # rq_replace~: none
        calls.append(PAYLOADS.replace(key, new, old, 0, entry))
    return calls


def cost(server: LocalReplica, raw: redis.Redis, kind: str, size: int, keys: int, count: int) -> float:
    payloads = batched(writes(raw, kind, keys, count), size)
    before = cpu_seconds(server.pid)
    send(server.port, payloads)
    return 1e6 * (cpu_seconds(server.pid) - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=20_000, help="calls per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,16,128", help="entries per rq_many (1: plain FCALLs)")
    parser.add_argument("--listpack-entries", type=int, default=None)
    parser.add_argument("--baseline", type=Path, default=None, help="another library build to compare")
    parser.add_argument("--empty", action="store_true",
                        help="add a server whose write functions return at once (the calls' floor)")
    args = parser.parse_args()
    sizes = [int(b) for b in args.batches.split(",")]
    source = LIBRARY.read_text()
    libraries: list[tuple[str, str, int | None]] = [("with digests", source, None),
                                                    ("without", without_digests(source), None)]
    if args.baseline is not None:
        libraries.append(("baseline", args.baseline.read_text(), None))
    if args.listpack_entries is not None:
        libraries.append((f"listpack {args.listpack_entries}", source, args.listpack_entries))
    if args.empty:  # filled by the library, then measured with the empty functions
        libraries.append(("empty calls", source, None))
    with tempfile.TemporaryDirectory(prefix="rq-writes-") as tmp:
        servers = launch(len(libraries), Path(tmp), prefix="w")
        try:
            setups = []
            for server, (name, code, entries) in zip(servers, libraries, strict=True):
                raw = redis.Redis(host=server.host, port=server.port)
                if entries is not None:
                    raw.config_set("hash-max-listpack-entries", entries)
                raw.function_load(code, replace=True)
                used = raw.info("memory")["used_memory"]
                fill(server, args.keys)
                grown = (raw.info("memory")["used_memory"] - used) / args.keys
                print(f"{name}: {args.keys} keys, {grown:.0f} B/key", flush=True)
                if name == "empty calls":
                    raw.function_load(empty_writes(code), replace=True)
                setups.append((name, server, raw))
            best: dict[tuple[str, str, int], float] = {}
            for round_no in range(args.rounds):
                # each round starts with another server: measured first, a server came out
                # 1-3 µs dearer per call than in the other places
                turn = round_no % len(setups)
                for name, server, raw in setups[turn:] + setups[:turn]:
                    for kind in KINDS:
                        for size in sizes:
                            cell = (name, kind, size)
                            value = cost(server, raw, kind, size, args.keys, args.writes)
                            best[cell] = min(best.get(cell, value), value)
            print(f"replica CPU µs per call, minimum of {args.rounds} interleaved rounds of "
                  f"{args.writes} calls:")
            print(f"{'library':14} {'call':11}" + "".join(f"{'batch ' + str(s):>11}" for s in sizes))
            for name, _, _ in setups:
                for kind in KINDS:
                    print(f"{name:14} {kind:11}" + "".join(f"{best[(name, kind, s)]:11.1f}" for s in sizes))
        finally:
            stop_all(servers)


if __name__ == "__main__":
    main()
