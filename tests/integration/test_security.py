"""Security against a real proxy over real redis-servers: protected mode, resource limits,
named users (ACL), authentication failures."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import redis
from redquorum.replicas.launcher import free_port

from tests.harness import ROOT, ProxyProcess, wait_for
from tests.resp_client import RawClient


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redquorum.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------
# protected mode


def test_protected_mode_refuses_a_public_address_without_a_password(replicas):
    replica_args = [a for r in replicas for a in ("--replica", f"{r.id}={r.address}")]
    result = run_cli("serve", "--listen", f"0.0.0.0:{free_port()}", *replica_args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "protected mode" in lines[0] and "--protected-mode no" in lines[0]
    assert "--password" in lines[0]


def test_protected_mode_allows_loopback_a_password_or_an_explicit_no():
    from redquorum.config import ConfigError, Replica, User, build, password_hash

    # only validated, never bound: any port does, so take free ones
    replica = [Replica("r1", "127.0.0.1", free_port())]
    port = free_port()
    build({"listen": f"127.0.0.1:{port}"}, replica)
    build({"listen": f"[::1]:{port}"}, replica)
    build({"listen": f"0.0.0.0:{port}", "password": "s3cret"}, replica)
    build({"listen": f"0.0.0.0:{port}", "protected_mode": "no"}, replica)
    closed_default = [User("default", "off"), User("app", "on ~* +@all",
                                                   (password_hash(b"pw"),))]
    build({"listen": f"0.0.0.0:{port}"}, replica, closed_default)
    for users in ([], [User("app", "on ~* +@all", (password_hash(b"pw"),))],
                  [User("default", "on nopass ~* +@all")]):
        try:
            build({"listen": f"10.1.2.3:{port}"}, replica, users)
        except ConfigError as exc:
            assert "protected mode" in str(exc)
        else:
            raise AssertionError(f"protected mode let {users} listen openly")


# ---------------------------------------------------------------------------
# resource limits


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Read and drop whatever ``sock`` receives until the peer closes it (True) or
    ``timeout`` passes (False)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def test_clients_pipelining_huge_replies_without_reading_are_cut_off_and_block_no_one(
        replicas, make_proxy):
    proxy = make_proxy(replicas, extra=["--client-output-buffer-limit", "64mb 8mb 2"])
    client = proxy.client()
    assert client.set("huge", b"v" * (1 << 20))
    floods = []
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$4\r\nhuge\r\n" * 1000)  # 1000 MiB of replies each
        floods.append(sock)
    peak = 0
    served = 0
    started = time.monotonic()

    def serve_one_then_check() -> bool:
        """One SET+GET for the well-behaved client; done once the floods were cut off
        (after the soft limit's seconds) and it alone is connected."""
        nonlocal served, peak
        assert client.set(f"ok{served}", served)  # a NOQUORUM would raise here
        assert client.get(f"ok{served}") == b"%d" % served
        served += 1
        peak = max(peak, rss_bytes(proxy.process.pid))
        return (time.monotonic() - started >= 3
                and int(client.info("clients")["connected_clients"]) == 1)

    try:
        wait_for(serve_one_then_check, timeout=60, interval=0,
                 what="the clients that never read to be disconnected")
    finally:
        for sock in floods:
            sock.close()
    print(f"served {served} SET+GET pairs meanwhile; proxy peak RSS {peak / 2**20:.0f} MiB")
    assert peak < 512 * 2**20
    assert int(client.info("stats")["rejected_connections"]) == 0


def test_maxclients_refuses_with_redis_error(replicas, make_proxy):
    proxy = make_proxy(replicas, extra=["--maxclients", "3"], metrics=True)
    held: list[RawClient] = []
    try:
        for _ in range(3):  # the harness's readiness probes may still hold a slot a moment
            held.append(wait_for(lambda: _admitted(proxy.port), timeout=5, what="a slot"))
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as extra:
            assert extra.recv(100) == b"-ERR max number of clients reached\r\n"
            assert extra.recv(100) == b""  # and closed
        held.pop().close()
        wait_for(lambda: _pings(proxy.port), timeout=5, what="a free slot")
    finally:
        for c in held:
            c.close()
    with proxy.client() as c:
        assert int(c.info("stats")["rejected_connections"]) >= 1
        assert c.config_get("maxclients") == {"maxclients": "3"}
    assert metric(proxy, "redquorum_rejected_connections_total") >= 1


def metric(proxy: ProxyProcess, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics",
                                  timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def _admitted(port: int) -> RawClient | None:
    c = RawClient(port)
    if c.call("PING") == "PONG":
        return c
    c.close()
    return None


def _pings(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(100) == b"+PONG\r\n"


def test_idle_clients_are_closed_after_timeout(replicas, make_proxy):
    proxy = make_proxy(replicas, extra=["--timeout", "1"])
    with socket.create_connection(("127.0.0.1", proxy.port)) as idle:
        idle.sendall(b"PING\r\n")
        assert idle.recv(100) == b"+PONG\r\n"
        assert closed_by_peer(idle, timeout=15)
    with RawClient(proxy.port) as busy:  # a client that keeps talking stays
        for _ in range(6):
            assert busy.call("PING") == "PONG"
            time.sleep(0.4)


def test_output_over_the_hard_limit_closes_the_client(replicas, make_proxy):
    proxy = make_proxy(replicas, extra=["--client-output-buffer-limit", "4mb 0 0"], timeout=2,
                       metrics=True)
    client = proxy.client()
    assert client.set("big", b"x" * (16 << 20))
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.connect(("127.0.0.1", proxy.port))
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
        time.sleep(0.5)  # the reply meets a full socket: most of it stays unsent
        assert closed_by_peer(sock, timeout=15)
    # as in Redis, the hard limit holds for any reply that does not fit at once
    assert client.set("small", "x") and client.get("small") == b"x"
    assert metric(proxy, "redquorum_client_output_limit_disconnections_total") == 1


PASSWORD = "correct horse"


class LockedProxy(ProxyProcess):
    """A proxy whose default user needs a password: PING answers NOAUTH once it serves."""

    ready_reply = b"-NOAUTH"


@pytest.fixture
def make_locked(tmp_path):
    started: list[ProxyProcess] = []

    def make(replica_list, **kwargs) -> ProxyProcess:
        kwargs.setdefault("log_path", tmp_path / f"locked{len(started)}.log")
        proxy = LockedProxy(list(replica_list), **kwargs)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.mark.parametrize(("data", "reply"), [
    (b"*11\r\n", b"-ERR Protocol error: unauthenticated multibulk length\r\n"),
    (b"*2\r\n$4\r\nAUTH\r\n$16385\r\n", b"-ERR Protocol error: unauthenticated bulk length\r\n"),
])
def test_unauthenticated_clients_get_redis_request_limits(replicas, make_locked, data, reply):
    proxy = make_locked(replicas, extra=["--password", PASSWORD])
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(data)
        assert sock.recv(200) == reply
        assert sock.recv(200) == b""


def test_authentication_lifts_the_request_limits_within_one_pipeline(replicas, make_locked):
    proxy = make_locked(replicas, extra=["--password", PASSWORD])
    with RawClient(proxy.port) as c:
        value = "v" * 20000
        replies = c.pipeline([["AUTH", PASSWORD], ["SET", "k", value],
                              ["MSET", *[f"k{i}" for i in range(12) for _ in (0, 1)]],
                              ["GET", "k"]])
        assert replies == ["OK", "OK", "OK", value.encode()]
        assert c.call("RESET") == "RESET"  # unauthenticated again: the limits are back
        c.send(*["PING"] * 11)
        assert c.read().text == "ERR Protocol error: unauthenticated multibulk length"


def test_glob_patterns_with_many_stars_cost_linear_work(proxy):
    from redquorum.protocol.glob import stringmatch

    evil = b"a*" * 3000 + b"b"
    assert stringmatch(evil, b"a" * 5000) is False  # recursed once per star before
    assert stringmatch(b"*a*a*a*a*a*a*a*a*a*a*a*a*b", b"a" * 200) is False
    assert stringmatch(b"*a*a*b*", b"xaxab") is True
    with proxy.client() as c:
        assert c.config_get(evil.decode()) == {}
        assert c.config_get("max*cl*s") == {"maxclients": "10000"}
        assert c.set("app:1", 1) and c.keys("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b") == []


# ---------------------------------------------------------------------------
# named users


USERS_TOML = """
[[users]]
name = "app"
password = "app-secret-1"
rules = "on +@read +@write -@dangerous ~app:*"

[[users]]
name = "admin"
rules = "on >admin-secret-2 allkeys allcommands"

[[users]]
name = "reader"
rules = "on #{reader_hash} ~* +@read -strlen +client|id"

[[users]]
name = "gone"
password = "gone-secret-3"
rules = "off ~* +@all"
"""
SECRETS = ("app-secret-1", "admin-secret-2", "reader-secret-4", "gone-secret-3", PASSWORD)


@pytest.fixture
def users_proxy(replicas, make_locked, tmp_path):
    import hashlib

    config = tmp_path / "users.toml"
    config.write_text(USERS_TOML.replace(
        "{reader_hash}", hashlib.sha256(b"reader-secret-4").hexdigest()))
    return make_locked(replicas, extra=["--config", str(config), "--password", PASSWORD],
                       metrics=True)


def test_named_users_get_their_commands_and_keys(users_proxy):
    with users_proxy.client(username="app", password="app-secret-1") as app:
        assert app.set("app:1", "one") and app.get("app:1") == b"one"
        assert app.incr("app:n") == 1
        with pytest.raises(redis.ResponseError, match="^No permissions to access a key$"):
            app.set("other", "x")
        with pytest.raises(redis.ResponseError, match="^No permissions to access a key$"):
            app.mset({"app:2": "a", "other": "b"})
        with pytest.raises(redis.ResponseError) as denied:
            app.flushall()
        assert str(denied.value) == "User app has no permissions to run the 'flushall' command"
        with pytest.raises(redis.ResponseError, match="'config\\|get' command"):
            app.config_get("maxclients")
        with pytest.raises(redis.ResponseError, match="'acl\\|list' command"):
            app.acl_list()
    with RawClient(users_proxy.port) as raw:
        assert raw.call("AUTH", "reader", "reader-secret-4") == "OK"
        assert raw.call("GET", "app:1") == b"one"
        assert raw.call("CLIENT", "ID") > 0
        assert raw.call("STRLEN", "app:1").text == (
            "NOPERM User reader has no permissions to run the 'strlen' command")
        assert raw.call("DEL", "app:1").text.startswith("NOPERM User reader")
        assert raw.call("CLIENT", "LIST").text == (
            "NOPERM User reader has no permissions to run the 'client|list' command")
    cli = subprocess.run(["redis-cli", "-p", str(users_proxy.port), "--user", "app", "--pass",
                          "app-secret-1", "--no-auth-warning", "GET", "app:1"],
                         capture_output=True, text=True, timeout=30)
    assert cli.stdout.strip() == "one", cli.stderr
    with users_proxy.client(password=PASSWORD) as default:  # --password's default user
        assert default.acl_whoami() == "default"
        assert default.get("app:1") == b"one"
        assert default.config_get("maxclients") == {"maxclients": "10000"}


def test_hello_auth_and_redis_wrongpass(users_proxy):
    with RawClient(users_proxy.port) as raw:
        assert raw.call("GET", "k").text == "NOAUTH Authentication required."
        hello = raw.call("HELLO", "3", "AUTH", "app", "app-secret-1")
        assert hello[b"proto"] == 3
        assert raw.call("CLIENT", "INFO").text.startswith("NOPERM")  # not @read or @write
        assert raw.call("HELLO", "3", "AUTH", "admin", "admin-secret-2")[b"proto"] == 3
        assert raw.call("ACL", "WHOAMI") == b"admin"
    with RawClient(users_proxy.port) as raw:
        wrong = "WRONGPASS invalid username-password pair or user is disabled."
        assert raw.call("AUTH", "app", "nope").text == wrong
        assert raw.call("AUTH", "gone", "gone-secret-3").text == wrong  # off
        assert raw.call("AUTH", "nobody", "x").text == wrong
        assert raw.call("HELLO", "3", "AUTH", "admin", "x").text == wrong
        assert raw.call("AUTH", "wrong-default").text == wrong
        assert raw.call("GET", "k").text.startswith("NOAUTH")
        assert raw.call("AUTH", "admin", "admin-secret-2") == "OK"
        assert raw.call("ACL", "WHOAMI") == b"admin"
    with users_proxy.client(protocol=3, username="admin", password="admin-secret-2") as c:
        assert c.ping()


def test_acl_inspection_and_refused_changes(users_proxy):
    with users_proxy.client(username="admin", password="admin-secret-2") as admin:
        lines = admin.acl_list()
        assert sorted(line.split()[1] for line in lines) == ["admin", "app", "default", "gone",
                                                              "reader"]
        app_line = next(line for line in lines if line.split()[1] == "app")
        import hashlib
        assert app_line.startswith("user app on sanitize-payload #"
                                   + hashlib.sha256(b"app-secret-1").hexdigest())
        default_line = next(line for line in lines if line.split()[1] == "default")
        assert default_line == ("user default on sanitize-payload #"
                                + hashlib.sha256(PASSWORD.encode()).hexdigest() + " ~* &* +@all")
        assert "~app:*" in app_line and "+@read +@write -@dangerous" in app_line
        user = admin.acl_getuser("app")
        assert user["flags"] == ["on", "sanitize-payload"]
        assert user["passwords"] == [hashlib.sha256(b"app-secret-1").hexdigest()]
        assert user["categories"] == ["-@all", "+@read", "+@write", "-@dangerous"]
        assert user["keys"] == ["~app:*"]
        assert admin.acl_getuser("nobody") is None
        cats = admin.acl_cat()
        assert {"read", "write", "admin", "keyspace", "dangerous"} <= set(cats)
        assert "get" in admin.acl_cat("read") and "get" not in admin.acl_cat("write")
        assert "flushall" in admin.acl_cat("dangerous")
        with pytest.raises(redis.ResponseError, match="does not support 'ACL SETUSER'.*config"):
            admin.acl_setuser("x", enabled=True)
        with pytest.raises(redis.ResponseError, match="does not support 'ACL DELUSER'"):
            admin.acl_deluser("app")


def test_failed_authentications_are_counted_and_logged_without_passwords(users_proxy):
    with RawClient(users_proxy.port) as raw:
        for _ in range(30):
            assert raw.call("AUTH", "app", "app-secret-WRONG").text.startswith("WRONGPASS")
        assert raw.call("AUTH", "app", "app-secret-1") == "OK"
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{users_proxy.metrics_port}/metrics", timeout=10).read().decode()
    assert "redquorum_auth_failures_total 30.0" in metrics
    with users_proxy.client(password=PASSWORD) as c:
        info = c.execute_command("INFO", "everything")
        config = c.config_get("*")
        clients = c.execute_command("CLIENT", "LIST")
    wait_for(lambda: "were not logged one by one" in users_proxy.log_path.read_text(),
             timeout=30, interval=0.5, what="the count of the failures not logged")
    users_proxy.stop()
    log = users_proxy.log_path.read_text()
    failures = [line for line in log.splitlines() if "failed authentication from 127.0.0.1:" in line]
    assert len(failures) == 10, log  # then rate-limited, and the rest counted in one line
    assert "20 more failed authentications were not logged one by one" in log
    assert "as app" in failures[0]
    for secret in (*SECRETS, "app-secret-WRONG"):
        for where, text in (("log", log), ("metrics", metrics), ("INFO", str(info)),
                            ("CONFIG GET", str(config)), ("CLIENT LIST", str(clients))):
            assert secret not in text, f"a password appears in {where}"


@pytest.mark.parametrize(("rules", "message"), [
    ("on +@nosuchcat", "unknown command category '@nosuchcat'"),
    ("on +nosuchcommand", "unknown command 'nosuchcommand'"),
    ("on #abc", "64 lowercase hex digits"),
    ("on %R~x", "not supported"),
    ("on ~* s3cret-without-its-marker", "rule 3: unknown rule starting with 's3'"),
])
def test_bad_acl_rules_stop_the_start(replicas, tmp_path, rules, message):
    config = tmp_path / "bad.toml"
    config.write_text(f'[[users]]\nname = "u"\nrules = "{rules}"\n')
    replica_args = [a for r in replicas for a in ("--replica", f"{r.id}={r.address}")]
    result = run_cli("serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}", *replica_args)
    assert result.returncode == 2
    assert message in result.stderr and "user 'u'" in result.stderr
    assert "s3cret-without" not in result.stderr


def test_replicas_reached_as_an_acl_user(replicas, make_proxy, tmp_path):
    for replica in replicas:
        raw = replicas.raw(replica.id)
        raw.execute_command("ACL", "SETUSER", "rq", "on", ">replica-secret", "~*", "&*", "+@all")
        raw.execute_command("ACL", "SETUSER", "default", "off")
        raw.close()
    config = tmp_path / "acl-replicas.toml"
    config.write_text("".join(
        f'[[replicas]]\nid = "{r.id}"\naddress = "{r.address}"\nusername = "rq"\n'
        f'password = "replica-secret"\n' for r in replicas))
    proxy = make_proxy([], extra=["--config", str(config)])
    with proxy.client() as c:
        assert c.set("acl", "ok") and c.get("acl") == b"ok"
        inspect = c.execute_command("RQ.INSPECT", "acl")
        assert [entry[entry.index(b"reachable") + 1] for entry in inspect] == [1, 1, 1]
        # COMMAND DOCS came from a replica, through the same ACL user
    with RawClient(proxy.port) as raw:
        def docs_since() -> bytes:
            doc = raw.call("COMMAND", "DOCS", "get")[1]  # RESP2: [name, [field, value...]]
            return doc[doc.index(b"since") + 1]

        wait_for(lambda: docs_since() == b"1.0.0", timeout=10,
                 what="COMMAND DOCS from a replica (the table's own say 0.1.0)")
    assert "replica-secret" not in proxy.log_path.read_text()


def test_settings_from_toml_environment_and_flags(tmp_path):
    from redquorum.config import load

    config = tmp_path / "limits.toml"
    config.write_text('[proxy]\nmaxclients = 50\n"client-output-buffer-limit" = "8mb 2mb 5"\n'
                      f'protected_mode = "no"\n[[replicas]]\nid = "r1"\naddress = "127.0.0.1:{free_port()}"\n')
    loaded = load({"config": str(config)}, environ={"REDQUORUM_TIMEOUT": "30"})
    assert (loaded.maxclients, loaded.timeout, loaded.protected_mode) == (50, 30.0, False)
    assert (loaded.output_limit.hard, loaded.output_limit.soft) == (8 << 20, 2 << 20)
    assert loaded.output_limit.soft_seconds == 5
    flagged = load({"config": str(config), "maxclients": 7},
                   environ={"REDQUORUM_MAXCLIENTS": "9"})
    assert flagged.maxclients == 7
    assert "password" not in repr(load({"config": str(config), "password": "pw"}, environ={}))


def test_output_limits_off_keep_the_client_and_read_nothing_more_meanwhile(replicas, make_proxy):
    proxy = make_proxy(replicas, extra=["--client-output-buffer-limit", "0 0 0"])
    client = proxy.client()
    value = b"z" * (1 << 20)
    assert client.set("wide", value)
    count = 48
    with socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.connect(("127.0.0.1", proxy.port))
        slow.sendall(b"*2\r\n$3\r\nGET\r\n$4\r\nwide\r\n" * count)
        time.sleep(3)  # not read: held, never closed
        peak = rss_bytes(proxy.process.pid)
        assert client.get("wide") == value
        expected = (b"$%d\r\n" % len(value) + value + b"\r\n") * count
        received = bytearray()
        slow.settimeout(10)
        while len(received) < len(expected):
            chunk = slow.recv(1 << 20)
            assert chunk, "the proxy closed a client with the limits off"
            received += chunk
        assert bytes(received) == expected
    print(f"proxy RSS while {count} MiB of replies waited: {peak / 2**20:.0f} MiB")
    assert peak < 256 * 2**20
