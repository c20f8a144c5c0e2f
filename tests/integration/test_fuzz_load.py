"""Hostile input and load against a live proxy: hypothesis-mutated RESP streams and
random garbage (no crash, no hang, no leaked file descriptor), and 2,000 concurrent
connections of which some read slowly, some idle and some authenticate wrongly (the
others are served without an error, the proxy's memory stays bounded)."""

from __future__ import annotations

import os
import random
import resource
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import ProxyProcess, start_replicas, wait_for
from tests.integration.test_security import LockedProxy, closed_by_peer, rss_bytes

pytestmark = pytest.mark.slow  # real processes under load, several seconds

PASSWORD = "load-test-password"


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the open-file limit ({hard}) is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture(scope="module")
def fuzz_proxies(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    replicas = start_replicas(3, base / "replicas")
    open_proxy = ProxyProcess(replicas, log_path=base / "open.log")
    locked = LockedProxy(replicas, log_path=base / "locked.log", extra=["--password", PASSWORD])
    try:
        baselines = {proxy.port: fd_count(proxy.process.pid) for proxy in (open_proxy, locked)}
        yield open_proxy, locked, baselines
    finally:
        open_proxy.stop()
        locked.stop()
        replicas.stop()


def encode(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


COMMANDS = [[b"SET", b"k", b"v"], [b"GET", b"k"], [b"MGET", b"k", b"k2"], [b"INCR", b"n"],
            [b"AUTH", PASSWORD.encode()], [b"AUTH", b"default", b"wrong"],
            [b"HELLO", b"3"], [b"HELLO", b"3", b"AUTH", b"default", PASSWORD.encode()],
            [b"RQ.SET", b"k", b"", b"v"], [b"RQ.GET", b"k"], [b"SCAN", b"0", b"MATCH", b"*a*b"],
            [b"CLIENT", b"SETNAME", b"x"], [b"ACL", b"WHOAMI"], [b"EXPIRE", b"k", b"100"],
            [b"PING"], [b"CONFIG", b"GET", b"*"], [b"RESET"]]


@st.composite
def mutated_streams(draw) -> bytes:
    stream = bytearray(b"".join(encode(draw(st.sampled_from(COMMANDS)))
                                for _ in range(draw(st.integers(1, 8)))))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "digits"]))
        at = draw(st.integers(0, max(0, len(stream) - 1)))
        if kind == "flip" and stream:
            stream[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            stream[at:at] = draw(st.binary(max_size=12))
        elif kind == "delete":
            del stream[at:at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del stream[at:]
        else:  # a length header made huge, negative or not a number
            stream[at:at] = draw(st.sampled_from([b"*99999999\r\n", b"$-5\r\n", b"*-1\r\n",
                                                  b"$18446744073709551616\r\n", b"*1\r\n$x\r\n",
                                                  b"*3\r\n$3\r\nSET\r\n"]))
    return bytes(stream)


def exchange_until_closed(port: int, data: bytes) -> None:
    """Send ``data``, end our side, and read until the proxy closes: it must, promptly."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the proxy may close first (a protocol error)
            return
        assert closed_by_peer(sock, timeout=15), f"the proxy kept a finished connection: {data!r}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=mutated_streams(), locked=st.booleans())
def test_mutated_resp_streams(fuzz_proxies, stream, locked):
    proxy = fuzz_proxies[1 if locked else 0]
    exchange_until_closed(proxy.port, stream)
    assert proxy.process.poll() is None, "the proxy died"


@pytest.fixture(scope="module")
def tls_fuzz_proxy(tmp_path_factory):
    from tests.integration.test_tls import TlsProxy, make_pki, tls_client_context

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    base = tmp_path_factory.mktemp("tlsfuzz")
    pki = make_pki(base / "pki")
    replicas = start_replicas(3, base / "replicas")
    context = tls_client_context(pki)
    proxy = TlsProxy(replicas, context=context, log_path=base / "proxy.log",
                     extra=["--tls-cert-file", str(pki["server.crt"]),
                            "--tls-key-file", str(pki["server.key"]),
                            "--tls-ca-cert-file", str(pki["ca.crt"])])
    try:
        yield proxy, context, fd_count(proxy.process.pid)
    finally:
        proxy.stop()
        replicas.stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=mutated_streams())
def test_mutated_resp_streams_inside_tls(tls_fuzz_proxy, stream):
    proxy, context, _ = tls_fuzz_proxy
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        try:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)  # a TCP end without close_notify; reads go raw
        except OSError:
            return
        assert closed_by_peer(sock, timeout=15), f"the proxy kept a finished connection: {stream!r}"
    assert proxy.process.poll() is None, "the proxy died"


def test_tls_fuzzing_leaves_no_descriptor(tls_fuzz_proxy):
    proxy, context, baseline = tls_fuzz_proxy
    wait_for(lambda: fd_count(proxy.process.pid) <= baseline, timeout=20,
             what="the proxy's descriptors to return to their count before the TLS fuzzing")


def test_no_crash_hang_or_leaked_descriptor_after_garbage(fuzz_proxies):
    rng = random.Random(20261201)
    *proxies, baselines = fuzz_proxies
    for proxy in proxies:
        pid = proxy.process.pid
        baseline = baselines[proxy.port]  # from before the mutated streams too
        for _ in range(150):
            size = rng.choice([1, 10, 100, 5000, 70000])
            exchange_until_closed(proxy.port, rng.randbytes(size))
        for _ in range(50):  # and connections dropped mid-request without a goodbye
            sock = socket.create_connection(("127.0.0.1", proxy.port))
            sock.sendall(encode([b"SET", b"k", b"x" * 100])[:rng.randint(1, 60)])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()  # linger 0: a reset
        wait_for(lambda pid=pid, baseline=baseline: fd_count(pid) <= baseline, timeout=20,
                 what="the proxy's descriptors to return to their count before the garbage")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(100) in (b"+PONG\r\n", b"-NOAUTH Authentication required.\r\n")


# ---------------------------------------------------------------------------
# 2,000 connections


def test_two_thousand_connections_slow_idle_and_wrong(tmp_path):
    total = 2000
    slow_count, wrong_count, good_count = 100, 200, 100
    idle_count = total - slow_count - wrong_count - good_count
    raise_fd_limit(total + 500)
    replicas = start_replicas(3, tmp_path / "replicas")
    proxy = LockedProxy(replicas, log_path=tmp_path / "proxy.log", timeout=2,
                        extra=["--password", PASSWORD,
                               "--client-output-buffer-limit", "32mb 1mb 3"])
    held: list[socket.socket] = []
    peak = 0

    def sample() -> None:
        nonlocal peak
        peak = max(peak, rss_bytes(proxy.process.pid))

    try:
        admin = proxy.client(password=PASSWORD)
        assert admin.set("wide", b"w" * 16384)
        baseline = rss_bytes(proxy.process.pid)
        auth = encode([b"AUTH", PASSWORD.encode()])
        for _ in range(idle_count):  # idle after authenticating (replies left unread)
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.sendall(auth)
            held.append(sock)
        sample()
        slow = []
        for _ in range(slow_count):  # 16 MiB of replies each, never read
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.connect(("127.0.0.1", proxy.port))
            sock.sendall(auth + encode([b"GET", b"wide"]) * 1000)
            slow.append(sock)
        held += slow
        sample()
        wrong_started = time.monotonic()
        for _ in range(wrong_count):  # wrong passwords, then a command anyway
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.sendall(encode([b"AUTH", b"guess"]) + encode([b"GET", b"wide"]))
            expected = (b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
                        b"-NOAUTH Authentication required.\r\n")
            got = b""
            while len(got) < len(expected):
                chunk = sock.recv(4096)
                assert chunk, "the proxy closed a connection that only failed to authenticate"
                got += chunk
            assert got == expected
            held.append(sock)
        windows = 2 + int((time.monotonic() - wrong_started) // 10)  # of the log's rate limit
        sample()
        connected = int(admin.info("clients")["connected_clients"])
        print(f"connected clients with everyone in: {connected}")
        assert connected >= total - good_count - slow_count

        def good_client(index: int) -> int:
            with proxy.client(password=PASSWORD, socket_timeout=30) as c:
                for i in range(20):
                    key = f"good:{index}:{i}"
                    assert c.set(key, i) and c.get(key) == b"%d" % i
            return index

        with ThreadPoolExecutor(max_workers=10) as pool:
            futures = [pool.submit(good_client, i) for i in range(good_count)]
            while not all(f.done() for f in futures):
                sample()
                time.sleep(0.1)
            assert sorted(f.result() for f in futures) == list(range(good_count))
        sample()
        # over the soft limit for longer than its 3 seconds: cut off (read nothing before)
        wait_for(lambda: int(admin.info("clients")["connected_clients"]) <= total - slow_count
                 - good_count + 1, timeout=30, interval=0.5, what="the slow readers to be cut off")
        for sock in slow:
            assert closed_by_peer(sock, timeout=30)
        sample()
        print(f"proxy RSS: {baseline / 2**20:.0f} MiB before, peak {peak / 2**20:.0f} MiB "
              f"with {total} connections")
        assert peak < 1024 * 2**20
        log = proxy.log_path.read_text()
        assert log.count("failed authentication from") <= 10 * windows  # rate-limited
        admin.close()
    finally:
        for sock in held:
            sock.close()
        proxy.stop()
        replicas.stop()
