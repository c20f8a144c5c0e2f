"""Bitmap writes through the replicated path: SETBIT is a read-modify-write at the key's
coordinator, so bits acknowledged before the coordinator dies are still set after; BITFIELD
writes with a compare-and-set, so concurrent increments are never lost. (Reply-by-reply
equality with redis-server is in test_differential.py.)"""

from __future__ import annotations

import threading

import redis


def coordinator_of(client: redis.Redis, key: str) -> str:
    """The first home replica of ``key`` (RQ.INSPECT lists them in order): while it is up,
    it coordinates the key's writes."""
    first = client.execute_command("RQ.INSPECT", key)[0]
    return dict(zip(first[::2], first[1::2], strict=True))[b"id"].decode()


def test_setbit_acknowledged_bits_survive_the_coordinator_dying(client, replicas):
    for offset in range(0, 40, 3):
        assert client.setbit("bits", offset, 1) == 0
    replicas.by_id(coordinator_of(client, "bits")).kill()
    for offset in range(1, 40, 3):
        assert client.setbit("bits", offset, 1) == 0
    assert client.setbit("bits", 0, 0) == 1
    expected = {o for o in range(1, 40) if o % 3 in (0, 1)}
    assert {o for o in range(48) if client.getbit("bits", o)} == expected
    assert client.bitcount("bits") == len(expected)


def test_bitfield_concurrent_increments_are_not_lost(proxy):
    counts = [0, 0]
    failures: list[str] = []

    def bump(index: int) -> None:
        client = proxy.client()
        try:
            for _ in range(40):
                try:
                    client.bitfield("counter").incrby("u32", "#1", 1).execute()
                    counts[index] += 1
                except redis.ResponseError as exc:  # a CAS that kept losing: nothing written
                    failures.append(str(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all("kept racing" in f for f in failures)
    reader = proxy.client()
    assert reader.bitfield("counter").get("u32", "#1").execute() == [sum(counts)]
    assert reader.strlen("counter") == 8
    reader.close()


def test_bitop_writes_the_destination_for_every_reader(client):
    client.set("x", b"\xf0\x0f")
    client.set("y", b"\xff")
    assert client.bitop("AND", "dest", "x", "y") == 2
    assert client.get("dest") == b"\xf0\x00"
    assert client.bitop("NOT", "dest", "missing") == 0
    assert client.exists("dest") == 0
