"""Real clients against the proxy: redis-py (RESP2 and its default RESP3 handshake), an
interactive redis-cli session on a pseudo-terminal, redis-benchmark, and Node's ioredis
(scripts/bootstrap.sh installs node, npm and ioredis into the repo's ignored .cache/node)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.harness import ROOT, ProxyProcess, start_replicas


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    base = tmp_path_factory.mktemp("clients")
    replicas = start_replicas(3, base / "replicas")
    proc = ProxyProcess(replicas, log_path=base / "proxy.log")
    try:
        yield proc
    finally:
        proc.stop()
        replicas.stop()


# ---------------------------------------------------------------------------
# redis-py


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py(proxy, protocol):
    client = redis.Redis(host="127.0.0.1", port=proxy.port, protocol=protocol, socket_timeout=10)
    try:
        prefix = f"py{protocol}:"
        info = client.client_info()  # the handshake: HELLO 3 (or nothing), CLIENT SETINFO
        assert info["resp"] == str(protocol)
        assert info["lib-name"] == "redis-py"
        assert client.ping() is True
        assert client.set(prefix + "s", "hello", ex=100) is True
        assert client.get(prefix + "s") == b"hello"
        assert 99 <= client.ttl(prefix + "s") <= 100
        assert client.set(prefix + "s", "again", nx=True) is None
        assert client.set(prefix + "s", "new", get=True) == b"hello"
        assert client.getex(prefix + "s", persist=True) == b"new"
        assert client.ttl(prefix + "s") == -1
        assert client.incr(prefix + "n") == 1
        assert client.incrby(prefix + "n", 41) == 42
        assert client.incrbyfloat(prefix + "f", 10.5) == 10.5
        assert client.incrbyfloat(prefix + "f", 0.1) == pytest.approx(10.6)
        assert client.get(prefix + "f") == b"10.6"
        assert client.append(prefix + "s", "!") == 4
        assert client.getrange(prefix + "s", 0, 1) == b"ne"
        assert client.setrange(prefix + "s", 1, "EW") == 4
        assert client.get(prefix + "s") == b"nEW!"
        assert client.mset({prefix + "a": 1, prefix + "b": 2}) is True
        assert client.msetnx({prefix + "a": 1, prefix + "c": 3}) is False
        assert client.mget(prefix + "a", prefix + "missing", prefix + "b") == [b"1", None, b"2"]
        assert client.exists(prefix + "a", prefix + "b", prefix + "missing") == 2
        assert client.type(prefix + "a") == b"string"
        assert client.expire(prefix + "a", 100, gt=True) is False
        assert client.expire(prefix + "a", 100) is True
        assert client.expiretime(prefix + "a") > time.time()
        assert client.rename(prefix + "a", prefix + "a2") is True
        assert client.copy(prefix + "a2", prefix + "a3") is True
        assert client.get(prefix + "a3") == b"1"
        assert sorted(client.keys(prefix + "a*")) == [(prefix + "a2").encode(), (prefix + "a3").encode()]
        assert set(client.scan_iter(match=prefix + "*", count=2)) == {
            (prefix + k).encode() for k in ("s", "n", "f", "a2", "a3", "b")}
        assert client.dbsize() >= 6
        assert client.randomkey() is not None
        assert client.delete(prefix + "a2", prefix + "a3") == 2
        assert client.config_get("databases") == {"databases": "1"} or \
            client.config_get("databases") == {b"databases": b"1"}
        assert client.info("server")["redis_version"].startswith("7.")
        assert client.time()[0] > 1_600_000_000
        assert client.command_count() > 40
        docs = client.execute_command("COMMAND DOCS", "get")
        assert docs
        with pytest.raises(redis.ResponseError, match="does not support 'hset'"):
            client.hset(prefix + "h", "f", "v")
        with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
            client.execute_command("GET")
        pipe = client.pipeline(transaction=False)
        pipe.set(prefix + "p", "1").incr(prefix + "p").get(prefix + "p").ttl(prefix + "p")
        assert pipe.execute() == [True, 2, b"2", -1]
    finally:
        client.close()


def test_redis_py_resp3_types(proxy):
    """RESP3 replies where Redis 7 uses RESP3 types: maps for HELLO and CONFIG GET."""
    client = redis.Redis(host="127.0.0.1", port=proxy.port, protocol=3, socket_timeout=10)
    try:
        hello = client.execute_command("HELLO", "3")
        assert hello[b"proto"] == 3 and hello[b"version"].startswith(b"7.")
        assert client.execute_command("CONFIG", "GET", "save") == {b"save": b""}
        assert client.execute_command("GET", "resp3:missing") is None
        conn = client.connection_pool.get_connection()
        try:
            conn.send_command("CLIENT", "INFO")
            assert b"resp=3" in conn.read_response()
        finally:
            client.connection_pool.release(conn)
    finally:
        client.close()


# ---------------------------------------------------------------------------
# redis-cli, interactive, on a pseudo-terminal


class Terminal:
    def __init__(self, argv: list[str], home: Path) -> None:
        self.master, slave = pty.openpty()
        env = dict(os.environ, TERM="dumb", HOME=str(home))  # redis-cli writes its history there
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     close_fds=True)
        os.close(slave)
        self.output = b""

    def expect(self, needle: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} in redis-cli output: {self.output[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    break
        index = self.output.index(needle) + len(needle)
        seen, self.output = self.output[:index], self.output[index:]
        return re.sub(rb"\x1b\[[0-9;]*m", b"", seen)  # without colours

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        os.close(self.master)


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_interactive_session(proxy, tmp_path):
    term = Terminal(["redis-cli", "-p", str(proxy.port)], tmp_path)
    try:
        prompt = f"127.0.0.1:{proxy.port}> ".encode()
        term.expect(prompt)
        term.send("help SET")
        help_text = term.expect(prompt)
        assert b"SET key value" in help_text and b"group: string" in help_text
        # redquorum's own commands are in the help: it came from COMMAND DOCS
        term.send("help RQ.GET")
        assert b"Returns all live siblings" in term.expect(prompt)
        term.send("set cli:key hello")
        assert b"OK" in term.expect(prompt)
        term.send("get cli:key")
        assert b'"hello"' in term.expect(prompt)
        term.send("incrbyfloat cli:f 0.1")
        assert b'"0.1"' in term.expect(prompt)
        term.send("lpush cli:list x")
        assert b"(error) ERR redquorum does not support 'lpush'" in term.expect(prompt)
        term.send("get")
        assert b"wrong number of arguments for 'get' command" in term.expect(prompt)
        term.send("ping")
        assert b"PONG" in term.expect(prompt)
        term.send("quit")
        term.proc.wait(10)
    finally:
        term.close()


# ---------------------------------------------------------------------------
# redis-benchmark


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="redis-benchmark is not installed")
def test_redis_benchmark_runs_without_errors(proxy):
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(proxy.port), "-t", "set,get,incr,mset",
         "-n", "2000", "-c", "20", "-q"],
        capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "error" not in text.lower() and "ERR" not in text, text
    for name in ("SET:", "GET:", "INCR:", "MSET (10 keys):"):
        assert name in text, text


# ---------------------------------------------------------------------------
# Node ioredis

IOREDIS_SCRIPT = r"""
const Redis = require('ioredis');
async function run(port, protocol) {
  const options = {host: '127.0.0.1', port, lazyConnect: true, enableReadyCheck: true,
                   maxRetriesPerRequest: 1};
  options.protocol = protocol;  // ioredis 6 defaults to 3
  const client = new Redis(options);
  const out = {};
  await client.connect();              // HELLO (protocol 3), CLIENT SETINFO, INFO ready check
  out.status = client.status;
  out.clientInfo = await client.client('INFO');
  await client.set(`node${protocol}:a`, '1');
  out.get = await client.get(`node${protocol}:a`);
  const pipe = client.pipeline();
  pipe.set(`node${protocol}:b`, '2');
  pipe.incr(`node${protocol}:c`);
  pipe.get(`node${protocol}:b`);
  pipe.mget(`node${protocol}:a`, `node${protocol}:b`, `node${protocol}:missing`);
  pipe.ttl(`node${protocol}:a`);
  pipe.incrbyfloat(`node${protocol}:f`, '0.1');
  out.pipeline = (await pipe.exec()).map(([err, value]) => err ? `ERR:${err.message}` : value);
  try { await client.hset('h', 'f', 'v'); } catch (e) { out.error = e.message; }
  out.after = await client.ping();
  client.disconnect();
  return out;
}
(async () => {
  const port = Number(process.argv[2]);
  const results = {resp2: await run(port, 2), resp3: await run(port, 3)};
  console.log(JSON.stringify(results));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def _ioredis_dir() -> Path:
    """scripts/bootstrap.sh installs ioredis into the repo's ignored .cache/node; a run
    without it installs there too."""
    cache = ROOT / ".cache" / "node"
    if (cache / "node_modules" / "ioredis" / "package.json").exists():
        return cache
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (scripts/bootstrap.sh installs it)")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                              "--prefix", str(cache), "ioredis"],
                             capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install ioredis timed out (no registry access?)")
    if out.returncode != 0:
        pytest.skip(f"npm install ioredis failed: {out.stderr.strip()[-300:]}")
    return cache


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_ioredis_ready_check_hello3_and_pipeline(proxy):
    directory = _ioredis_dir()
    script = directory / "redquorum_check.js"
    script.write_text(IOREDIS_SCRIPT)
    out = subprocess.run(["node", str(script), str(proxy.port)], capture_output=True, text=True,
                         timeout=60, cwd=directory)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for protocol in (2, 3):
        r = results[f"resp{protocol}"]
        assert r["status"] == "ready"
        assert f"resp={protocol}" in r["clientInfo"]
        assert "lib-name=ioredis" in r["clientInfo"]
        assert r["get"] == "1"
        assert r["pipeline"] == ["OK", 1, "2", ["1", "2", None], -1, "0.1"]
        assert "does not support 'hset'" in r["error"]
        assert r["after"] == "PONG"
