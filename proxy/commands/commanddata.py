"""COMMAND INFO and COMMAND DOCS of the Redis commands redquorum serves, asked of a replica.

The replicas are redis-server 7 and hold exactly what drivers and ``redis-cli`` want to
read (arity, flags, key specs, argument docs), so the proxy asks one of them at startup
instead of shipping a copy: ``keep_loading`` tries each replica in turn until one answers
``COMMAND INFO`` / ``COMMAND DOCS`` for the served names, and stores the answers in a
``CommandData``. Until then proxy/connection.py describes every command from the command
table alone. The container commands (CLIENT, COMMAND, CONFIG) are cut down to the
subcommands served here; redquorum's own commands (RQ.*) are never asked for.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from ..protocol.resp import Incomplete, ReplyError, SetReply, encode_command, parse_typed
from .table import TABLE

log = logging.getLogger("redquorum.commanddata")

FETCH_TIMEOUT = 3.0  # seconds one attempt may take, connect to last reply
RETRY_INTERVAL = 1.0  # seconds between rounds over the replicas while none answered
MAX_REPLY = 16 * 1024 * 1024  # a reply this big is not COMMAND DOCS of ~50 commands

# The subcommands the container commands serve, with their arity (Redis's convention:
# >0 exact, <0 at least -arity, the container and subcommand names count). Dispatch uses
# these whether or not the replica's data is loaded; other subcommands are refused.
SUBCOMMANDS: dict[str, dict[str, int]] = {
    "acl": {"cat": -2, "getuser": 3, "help": 2, "list": 2, "users": 2, "whoami": 2},
    "client": {"getname": 2, "help": 2, "id": 2, "info": 2, "list": -2, "no-evict": 3,
               "no-touch": 3, "setinfo": 4, "setname": 3},
    "command": {"count": 2, "docs": -2, "getkeys": -4, "getkeysandflags": -4, "help": 2,
                "info": -2, "list": -2},
    "config": {"get": -3, "help": 2, "resetstat": 2},
}


def served_names() -> list[str]:
    """The Redis commands the proxy serves: its command table without RQ.* commands."""
    return [c.name for c in TABLE.values() if not c.name.startswith("rq.")]


class CommandData:
    """What one replica answered; empty (``loaded`` false) until an answer arrived.

    ``info`` maps a command name to its COMMAND INFO entry, ``docs`` to its COMMAND DOCS
    map, both as proxy/resp.py encodes them back to the replica's bytes (str for bulk
    strings, ``Simple``, ``SetReply``...). ``derived`` is for readers to cache what they
    compute from the data; every load resets it to ``None``.
    """

    __slots__ = ("info", "docs", "version", "source", "loaded", "derived", "_loaded", "_tried")

    def __init__(self) -> None:
        self.info: dict[str, list[Any]] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.version = ""
        self.source = ""
        self.loaded = False
        self.derived: Any = None
        self._loaded = trio.Event()
        self._tried = trio.Event()  # every replica was asked once (or the data is loaded)

    def store(self, info: dict[str, list[Any]], docs: dict[str, dict[str, Any]], version: str,
              source: str = "") -> None:
        self.info, self.docs, self.version, self.source = info, docs, version, source
        self.loaded = True
        self.derived = None
        self._loaded.set()
        self._tried.set()

    async def wait_loaded(self) -> None:
        await self._loaded.wait()

    async def wait_tried(self) -> None:
        """Until the data is loaded or the first round over the replicas failed."""
        await self._tried.wait()

    async def keep_loading(self, replicas: Sequence[Any],
                           tls: Mapping[str, ssl.SSLContext] | None = None, *,
                           timeout: float = FETCH_TIMEOUT,
                           interval: float = RETRY_INTERVAL) -> None:
        """Ask ``replicas`` (objects with ``host``, ``port``, ``password``, ``username``)
        in turn until one answers, a round every ``interval`` seconds; return once loaded.
        ``tls``: the TLS context of each replica reached over TLS, by id. Never raises
        (but cancellation)."""
        names = served_names()
        failures = 0
        while not self.loaded:
            for replica in replicas:
                address = f"{replica.host}:{replica.port}"
                try:
                    info, docs, version = await fetch(
                        replica.host, replica.port, getattr(replica, "password", None), names,
                        timeout=timeout, username=getattr(replica, "username", None),
                        tls=(tls or {}).get(getattr(replica, "id", "")))
                except Exception as exc:  # noqa: BLE001 - a failed attempt is only logged
                    failures += 1
                    level = logging.WARNING if failures == len(replicas) else logging.DEBUG
                    log.log(level, "cannot read COMMAND INFO/DOCS from %s: %s", address,
                            str(exc) or type(exc).__name__)
                    continue
                self.store(info, docs, version, address)
                log.info("COMMAND INFO/DOCS of %d commands read from %s (redis-server %s)",
                         len(info), address, version)
                return
            self._tried.set()
            await trio.sleep(interval)


class FetchError(Exception):
    pass


async def fetch(host: str, port: int, password: str | None = None,
                names: Sequence[str] | None = None, *, timeout: float = FETCH_TIMEOUT,
                username: str | None = None, tls: ssl.SSLContext | None = None
                ) -> tuple[dict[str, list[Any]], dict[str, dict[str, Any]], str]:
    """``(info by name, docs by name, version)`` of ``names`` from one redis-server."""
    names = list(names) if names is not None else served_names()
    auth = [username, password] if username else [password]
    commands = [encode_command("AUTH", *auth)] if password else []
    commands += [encode_command("HELLO", "3"), encode_command("COMMAND", "INFO", *names),
                 encode_command("COMMAND", "DOCS", *names)]
    with trio.fail_after(timeout):
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_hostname=host)
        async with stream:
            await stream.send_all(b"".join(commands))
            replies = await _read_replies(stream, len(commands))
    for reply in replies:
        if isinstance(reply, ReplyError):
            raise FetchError(reply.text)
    hello, infos, docs = replies[-3:]
    if not isinstance(hello, dict) or not isinstance(infos, list) or not isinstance(docs, dict):
        raise FetchError("unexpected reply types (not a RESP3 redis-server 7?)")
    version = hello.get(b"version", b"")
    version = version.decode(errors="replace") if isinstance(version, bytes) else str(version)
    info_by_name, docs_by_name = digest(names, infos, docs)
    if not info_by_name:
        raise FetchError("the server knows none of the commands")
    return info_by_name, docs_by_name, version


async def _read_replies(stream: trio.abc.Stream, count: int) -> list[Any]:
    buf = b""
    pos = 0
    replies: list[Any] = []
    while len(replies) < count:
        try:
            value, pos = parse_typed(buf, pos)
        except Incomplete:
            data = await stream.receive_some(1 << 20)
            if not data:
                errors = [r.text for r in replies if isinstance(r, ReplyError)]
                raise FetchError("; ".join(errors) or "connection closed") from None
            buf += data
            if len(buf) > MAX_REPLY:
                raise FetchError("reply too large") from None
            continue
        replies.append(value)
    return replies


def digest(names: Sequence[str], infos: list[Any], docs: dict[Any, Any]
           ) -> tuple[dict[str, list[Any]], dict[str, dict[str, Any]]]:
    """Typed replies → what is served: str instead of bytes, container commands cut down to
    the subcommands served (sorted by name), commands the server does not know left out."""
    if len(infos) != len(names):
        raise FetchError(f"COMMAND INFO answered {len(infos)} entries for {len(names)} names")
    info_by_name: dict[str, list[Any]] = {}
    for name, entry in zip(names, infos, strict=True):
        if not isinstance(entry, list) or len(entry) < 10:
            continue  # unknown to this server: described from the command table
        entry = plain(entry)
        if name in SUBCOMMANDS:
            keep = _kept(name)
            entry[9] = sorted((sub for sub in entry[9] if sub[0] in keep), key=lambda e: e[0])
        info_by_name[name] = entry
    docs_by_name: dict[str, dict[str, Any]] = {}
    for key, doc in docs.items():
        name = plain(key)
        if not isinstance(name, str) or not isinstance(doc, dict):
            continue
        doc = plain(doc)
        if name in SUBCOMMANDS and isinstance(doc.get("subcommands"), dict):
            keep = _kept(name)
            doc["subcommands"] = {k: v for k, v in sorted(doc["subcommands"].items())
                                  if k in keep}
        docs_by_name[name] = doc
    return info_by_name, docs_by_name


def _kept(container: str) -> set[str]:
    return {f"{container}|{s}" for s in SUBCOMMANDS[container]}


def plain(value: Any) -> Any:
    """Typed RESP3 values → the values proxy/resp.py encodes back to the same bytes."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, SetReply):
        return SetReply(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    return value
