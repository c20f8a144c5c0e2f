"""Nothing a client sends may crash the proxy: garbage, hostile sizes, abrupt closes."""

from __future__ import annotations

import random
import socket
import time

import pytest


def exchange(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


@pytest.mark.parametrize(("data", "reply"), [
    (b"*2000000000\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*1\r\n$999999999999\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*1\r\n:5\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
    (b'PING "unbalanced\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
])
def test_protocol_errors_answer_and_close(proxy, data, reply):
    assert exchange(proxy.port, data) == reply


def test_random_garbage_never_hurts_the_proxy(proxy):
    rng = random.Random(20261126)
    pieces = [b"*", b"$", b"\r\n", b"1", b"3", b"-", b"GET", b"SET", b"k", b" ", b'"', b"\x00",
              b"\xff", b"RQ.SET", b"\x01\x92", b"HELLO", b"3", b"EX", b"99999999999999999999"]
    for _ in range(300):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        exchange(proxy.port, data, timeout=0.5)
    c = proxy.client()
    assert c.ping() and c.set("still", "here") and c.get("still") == b"here"


def test_clients_that_vanish_mid_request(proxy):
    for partial in (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab", b"GET k", b"*2\r\n$3\r\nGET\r\n"):
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(partial)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" * 1000)  # and never reads the replies
    c = proxy.client()
    assert c.ping()
    assert c.get("k") is None


def test_large_values_round_trip(client):
    value = bytes(range(256)) * 4096 * 8  # 8 MiB, every byte value
    assert client.set("big", value)
    assert client.get("big") == value
    assert client.strlen("big") == len(value)


def test_a_client_that_reads_slowly_gets_every_reply_and_blocks_no_one(proxy):
    value = b"v" * 1024 * 1024
    client = proxy.client()
    assert client.set("wide", value)
    count = 32  # 32 MiB of replies: more than the socket buffers on both sides hold
    with socket.create_connection(("127.0.0.1", proxy.port)) as slow:
        slow.sendall(b"*2\r\n$3\r\nGET\r\n$4\r\nwide\r\n" * count)
        # while its replies wait for room, everyone else is served
        for i in range(20):
            assert client.set(f"other{i}", i) and client.get(f"other{i}") == b"%d" % i
        slow.settimeout(10)
        expected = (b"$%d\r\n" % len(value) + value + b"\r\n") * count
        received = bytearray()
        while len(received) < len(expected):
            chunk = slow.recv(1 << 20)
            assert chunk, "the proxy closed the connection"
            received += chunk
        assert bytes(received) == expected


def test_a_client_that_sends_and_closes_its_side_is_answered_and_closed(proxy):
    # The data and the FIN arrive in one edge: once the data is read, nothing else will
    # wake the connection, so the end must be noticed from that edge.
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(100):  # a timeout here: the proxy kept the connection
                received += chunk
            assert received == b"+OK\r\n"


def test_a_client_that_closes_its_side_still_gets_a_large_reply_whole(proxy):
    value = bytes(range(256)) * 4096 * 4  # 4 MiB: more than the socket buffers take at once
    client = proxy.client()
    assert client.set("whole", value)
    expected = b"$%d\r\n%b\r\n+OK\r\n" % (len(value), value)
    for request in (b"*2\r\n$3\r\nGET\r\n$5\r\nwhole\r\n",
                    b"*2\r\n$3\r\nGET\r\n$5\r\nwhole\r\n*1\r\n$4\r\nQUIT\r\n"):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            time.sleep(0.3)  # the end is seen while most of the reply waits for room
            received = bytearray()
            while chunk := sock.recv(1 << 20):
                received += chunk
            assert bytes(received) == (expected if b"QUIT" in request else expected[:-5])
