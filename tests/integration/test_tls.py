"""TLS on the client listener and towards the replicas, against real TLS redis-servers.

A CA, a server certificate (for 127.0.0.1 and localhost) and a client certificate are
made with the openssl command line at test time; nothing secret is committed.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import redis
from redquorum.replicas.launcher import LaunchError, LocalReplica, free_port, stop_all

from tests.harness import ProxyProcess, Replicas, wait_for
from tests.integration.test_clients import _ioredis_dir

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path, tag: str = "") -> dict[str, Path]:
    """CA, server and client certificates (EC P-256) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", "-new", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", f"/CN=redquorum test CA{tag}", cwd=directory)
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=redquorum test {name}{tag}", cwd=directory)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", str(ext),
                cwd=directory)
    return {name: directory / name for name in ("ca.crt", "server.crt", "server.key",
                                                   "client.crt", "client.key")}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_client_context(pki: dict[str, Path], *, cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    if cert:
        ctx.load_cert_chain(str(pki["client.crt"]), str(pki["client.key"]))
    return ctx


def tls_ping(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def tls_replicas(pki, tmp_path_factory):
    """Three redis-servers that speak only TLS and require a client certificate."""
    base = tmp_path_factory.mktemp("tls-replicas")
    reps = Replicas()
    ctx = tls_client_context(pki)
    try:
        for i in (1, 2, 3):
            rep = LocalReplica(f"t{i}", free_port(), base / f"t{i}")
            rep.start(["--port", "0", "--tls-port", str(rep.port),
                       "--tls-cert-file", str(pki["server.crt"]),
                       "--tls-key-file", str(pki["server.key"]),
                       "--tls-ca-cert-file", str(pki["ca.crt"]), "--tls-auth-clients", "yes"])
            reps.append(rep)
        for rep in reps:
            wait_for(lambda rep=rep: tls_ping(rep.port, ctx), timeout=15,
                     what=f"TLS redis-server {rep.id}")
    except (LaunchError, AssertionError):
        stop_all(reps)
        pytest.skip("redis-server cannot serve TLS here")
    yield reps
    stop_all(reps)


class TlsProxy(ProxyProcess):
    """A proxy whose listener speaks TLS: ready once PING answers over TLS."""

    context: ssl.SSLContext

    def __init__(self, *args, context: ssl.SSLContext, **kwargs) -> None:
        self.context = context
        super().__init__(*args, **kwargs)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"proxy exited with {self.process.returncode}: {self.args}")
        return tls_ping(self.port, self.context)


def replicas_toml(reps: list[LocalReplica], pki: dict[str, Path]) -> str:
    return "".join(
        f'[[replicas]]\nid = "{r.id}"\naddress = "{r.address}"\ntls = true\n'
        f'tls_ca_cert_file = "{pki["ca.crt"]}"\ntls_cert_file = "{pki["client.crt"]}"\n'
        f'tls_key_file = "{pki["client.key"]}"\n' for r in reps)


@pytest.fixture
def start_tls_proxy(tls_replicas, pki, tmp_path):
    started: list[ProxyProcess] = []

    def start(*flags: str, cert_dir: dict[str, Path] | None = None) -> TlsProxy:
        certs = cert_dir or pki
        config = tmp_path / f"tls{len(started)}.toml"
        config.write_text(replicas_toml(tls_replicas, pki))
        proxy = TlsProxy([], context=tls_client_context(certs), log_path=tmp_path / "proxy.log",
                         extra=["--config", str(config),
                                "--tls-cert-file", str(certs["server.crt"]),
                                "--tls-key-file", str(certs["server.key"]),
                                "--tls-ca-cert-file", str(certs["ca.crt"]), *flags])
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def tls_redis(proxy: ProxyProcess, pki: dict[str, Path], protocol: int = 2) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=proxy.port, protocol=protocol, socket_timeout=10,
                       ssl=True, ssl_ca_certs=str(pki["ca.crt"]),
                       ssl_certfile=str(pki["client.crt"]), ssl_keyfile=str(pki["client.key"]))


def test_tls_end_to_end_over_tls_replicas(start_tls_proxy, pki):
    proxy = start_tls_proxy()
    for protocol in (2, 3):
        with tls_redis(proxy, pki, protocol) as c:
            assert c.set(f"tls{protocol}", "secret value") and c.get(f"tls{protocol}") == b"secret value"
            big = bytes(range(256)) * 4096 * 6  # 6 MiB: many TLS records, a full socket
            assert c.set("big", big) and c.get("big") == big
            pipe = c.pipeline(transaction=False)
            for i in range(2000):
                pipe.set(f"p{i}", i)
                pipe.get(f"p{i}")
            replies = pipe.execute()
            assert replies[1::2] == [b"%d" % i for i in range(2000)]
            inspect = c.execute_command("RQ.INSPECT", f"tls{protocol}")
            assert len(inspect) == 3
    cli = subprocess.run(
        ["redis-cli", "--tls", "--cacert", str(pki["ca.crt"]), "--cert", str(pki["client.crt"]),
         "--key", str(pki["client.key"]), "-h", "127.0.0.1", "-p", str(proxy.port),
         "GET", "tls2"], capture_output=True, text=True, timeout=30)
    assert cli.stdout.strip() == "secret value", cli.stderr


def test_tls_refuses_plain_text_and_clients_without_a_certificate(start_tls_proxy, pki):
    proxy = start_tls_proxy()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as plain:
        plain.sendall(b"PING\r\n")
        try:
            data = plain.recv(100)
        except ConnectionResetError:
            data = b""
        assert b"PONG" not in data
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw, \
                tls_client_context(pki, cert=False).wrap_socket(
                    raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(100):
                raise ConnectionResetError("closed")
    with tls_redis(proxy, pki) as c:
        assert c.ping()


def test_tls_auth_clients_no_and_protocol_versions(start_tls_proxy, pki):
    proxy = start_tls_proxy("--tls-auth-clients", "no", "--tls-protocols", "TLSv1.3",
                            "--tls-ciphersuites", "TLS_AES_256_GCM_SHA384")
    no_cert = tls_client_context(pki, cert=False)
    assert tls_ping(proxy.port, no_cert)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw, \
            no_cert.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        assert sock.version() == "TLSv1.3"
        assert sock.cipher()[0] == "TLS_AES_256_GCM_SHA384"
    old = tls_client_context(pki, cert=False)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    assert not tls_ping(proxy.port, old)


def test_tls_auth_clients_optional_takes_no_certificate_but_refuses_a_bad_one(
        start_tls_proxy, pki, tmp_path):
    proxy = start_tls_proxy("--tls-auth-clients", "optional")
    assert tls_ping(proxy.port, tls_client_context(pki, cert=False))
    assert tls_ping(proxy.port, tls_client_context(pki))
    stranger = make_pki(tmp_path / "stranger", tag=" stranger")
    foreign = tls_client_context(pki, cert=False)
    foreign.load_cert_chain(str(stranger["client.crt"]), str(stranger["client.key"]))
    assert not tls_ping(proxy.port, foreign)  # a certificate from another CA


def test_sighup_reloads_certificates_without_dropping_connections(start_tls_proxy, pki, tmp_path):
    live = {name: tmp_path / "live" / name for name in pki}
    (tmp_path / "live").mkdir()
    for name, path in pki.items():
        shutil.copy(path, live[name])
    proxy = start_tls_proxy(cert_dir=live)
    before = _peer_certificate(proxy.port, pki)
    with tls_redis(proxy, pki) as held:
        assert held.set("held", "1")
        fresh = make_pki(tmp_path / "fresh", tag=" 2")
        for name in ("server.crt", "server.key", "ca.crt"):  # a new CA: the change shows
            shutil.copy(fresh[name], live[name])
        proxy.process.send_signal(signal.SIGHUP)
        wait_for(lambda: _peer_certificate(proxy.port, fresh) not in (None, before), timeout=10,
                 what="the new certificate")
        assert held.get("held") == b"1"  # the connection made before the reload still works
        assert held.incr("count") == 1
    assert _peer_certificate(proxy.port, pki) is None  # the old CA no longer verifies it


def _peer_certificate(port: int, certs: dict[str, Path]) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                tls_client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            return sock.getpeercert(binary_form=True)
    except OSError:
        return None


def test_a_replica_that_fails_verification_is_down_not_trusted(tls_replicas, pki, tmp_path):
    other = make_pki(tmp_path / "other", tag=" other")
    config = tmp_path / "wrongca.toml"
    config.write_text(replicas_toml(tls_replicas, other))  # a CA that did not sign them
    proxy = ProxyProcess([], extra=["--config", str(config)], log_path=tmp_path / "p.log")
    try:
        with proxy.client() as c:
            with pytest.raises(redis.ResponseError, match="NOQUORUM"):
                c.set("k", "v")
    finally:
        proxy.stop()
    assert "certificate verify failed" in (tmp_path / "p.log").read_text()


IOREDIS_TLS = r"""
const Redis = require('ioredis');
const fs = require('fs');
(async () => {
  const [port, ca, cert, key] = process.argv.slice(2);
  const client = new Redis({host: '127.0.0.1', port: Number(port), lazyConnect: true,
    maxRetriesPerRequest: 1, tls: {ca: fs.readFileSync(ca), cert: fs.readFileSync(cert),
    key: fs.readFileSync(key), servername: 'localhost'}});
  await client.connect();
  await client.set('node:tls', 'over tls');
  const got = await client.get('node:tls');
  client.disconnect();
  console.log(JSON.stringify({got}));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_ioredis_over_tls(start_tls_proxy, pki):
    proxy = start_tls_proxy()
    directory = _ioredis_dir()
    script = directory / "redquorum_tls_check.js"
    script.write_text(IOREDIS_TLS)
    out = subprocess.run(["node", str(script), str(proxy.port), str(pki["ca.crt"]),
                          str(pki["client.crt"]), str(pki["client.key"])],
                         capture_output=True, text=True, timeout=60, cwd=directory)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"got": "over tls"}


def test_tls_settings_are_checked_at_start(tls_replicas, pki, tmp_path):
    from tests.integration.test_security import run_cli

    replica = f"--replica=x={tls_replicas[0].address}"
    for flags, message in (
            (["--tls-cert-file", str(pki["server.crt"])], "go together"),
            (["--tls-cert-file", str(pki["server.crt"]), "--tls-key-file", str(pki["server.key"])],
             "needs --tls-ca-cert-file"),
            (["--tls-cert-file", str(tmp_path / "none.crt"), "--tls-key-file", "x",
              "--tls-auth-clients", "no"], "TLS certificates"),
            (["--tls-cert-file", str(pki["server.crt"]), "--tls-key-file", str(pki["server.key"]),
              "--tls-auth-clients", "no", "--tls-protocols", "SSLv3"], "tls-protocols")):
        result = run_cli("serve", "--listen", "127.0.0.1:1", replica, *flags)
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_failed_and_abandoned_tls_connections_leave_no_descriptor(start_tls_proxy, pki):
    import os
    import random

    proxy = start_tls_proxy()
    pid = proxy.process.pid

    def descriptors() -> int:
        return len(os.listdir(f"/proc/{pid}/fd"))

    with tls_redis(proxy, pki) as c:  # the replica links are up and counted
        assert c.ping()
    baseline = descriptors()
    rng = random.Random(7)
    good = tls_client_context(pki)
    for i in range(60):
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        if i % 3 == 0:  # garbage instead of a ClientHello
            raw.sendall(rng.randbytes(rng.randint(1, 3000)))
            raw.close()
        elif i % 3 == 1:  # a handshake, then garbage inside TLS, then gone
            sock = good.wrap_socket(raw, server_hostname="127.0.0.1")
            sock.sendall(rng.randbytes(rng.randint(1, 3000)))
            sock.close()
        else:  # half a handshake
            raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            raw.close()
    wait_for(lambda: descriptors() <= baseline, timeout=20,
             what="the proxy's descriptors to return to their count")
    with tls_redis(proxy, pki) as c:
        assert c.set("after", "garbage") and c.get("after") == b"garbage"


def test_a_tls_client_that_ends_right_after_the_handshake_is_closed(start_tls_proxy, pki):
    # Its Finished message and its FIN arrive in one edge; the handshake consumes the
    # bytes and gives no plaintext, so the end must be looked for before waiting again.
    proxy = start_tls_proxy()
    context = tls_client_context(pki)
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):  # raw bytes now; a timeout here: the proxy kept it
                pass


def test_sighup_to_workers_parent_reloads_every_worker(start_tls_proxy, pki, tmp_path):
    live = {name: tmp_path / "live" / name for name in pki}
    (tmp_path / "live").mkdir()
    for name, path in pki.items():
        shutil.copy(path, live[name])
    proxy = start_tls_proxy("--workers", "2", cert_dir=live)
    fresh = make_pki(tmp_path / "fresh", tag=" 2")
    for name in ("server.crt", "server.key", "ca.crt"):
        shutil.copy(fresh[name], live[name])
    proxy.process.send_signal(signal.SIGHUP)
    # every new connection, whichever worker the kernel gives it to, shows the new one
    wait_for(lambda: all(_peer_certificate(proxy.port, fresh) is not None for _ in range(12)),
             timeout=15, what="every worker's new certificate")
    assert proxy.process.poll() is None, "SIGHUP stopped the parent"
