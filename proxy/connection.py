"""Connection and server commands: PING, HELLO, AUTH, CLIENT, INFO, COMMAND, TIME..."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import info
from .commands import NOT_INT, SYNTAX, TABLE, Batch, Command, arity_ok, command, err_arity, parse_int
from .info import REDIS_VERSION
from .resp import OK, PONG, ReplyError, Simple, Verbatim

if TYPE_CHECKING:  # pragma: no cover
    from .server import Proxy, Session


# ---------------------------------------------------------------------------
# connection commands


@command("PING", -1, "fast", group="connection", summary="Returns the server's liveliness response.")
def cmd_ping(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) > 2:
        return err_arity("ping")
    return args[1] if len(args) == 2 else PONG


@command("ECHO", 2, "fast", group="connection", summary="Returns the given string.")
def cmd_echo(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return args[1]


@command("QUIT", -1, "fast", group="connection", summary="Closes the connection.")
def cmd_quit(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    s.closing = True
    return OK


@command("SELECT", 2, "fast", group="connection", summary="Changes the selected database.")
def cmd_select(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    db = parse_int(args[1])
    if db is None:
        return NOT_INT
    if db != 0:
        return ReplyError("ERR DB index is out of range")
    return OK


@command("AUTH", -2, "fast noauth", group="connection", summary="Authenticates the connection.")
def cmd_auth(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) > 3:
        return SYNTAX
    return app.authenticate(s, args[1] if len(args) == 2 else args[2],
                            None if len(args) == 2 else args[1])


@command("HELLO", -1, "fast noauth", group="connection", summary="Handshakes with the server.")
def cmd_hello(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    proto = s.proto
    if len(args) >= 2:
        ver = parse_int(args[1])
        if ver is None:
            return ReplyError("ERR Protocol version is not an integer or out of range")
        if ver not in (2, 3):
            return ReplyError("NOPROTO unsupported protocol version")
        proto = ver
    i = 2
    name = None
    while i < len(args):
        opt = args[i].lower()
        more = len(args) - i - 1
        if opt == b"auth" and more >= 2:
            result = app.authenticate(s, args[i + 2], args[i + 1])
            if isinstance(result, ReplyError):
                return result
            i += 3
        elif opt == b"setname" and more >= 1:
            name = args[i + 1]
            if not valid_client_name(name):
                return ReplyError("ERR Client names cannot contain spaces, newlines or special characters.")
            i += 2
        else:
            return ReplyError(f"ERR Syntax error in HELLO option '{args[i].decode(errors='replace')}'")
    if app.config.password and not s.authenticated:
        return ReplyError("NOAUTH HELLO must be called with the client already authenticated, "
                          "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                          "authenticate the client and select the RESP protocol version at the "
                          "same time")
    if name is not None:
        s.name = name
    s.proto = proto
    return {
        "server": "redis",
        "version": REDIS_VERSION,
        "proto": proto,
        "id": s.id,
        "mode": "standalone",
        "role": "master",
        "modules": [],
    }


def valid_client_name(name: bytes) -> bool:
    return all(33 <= c <= 126 for c in name)


@command("RESET", 1, "fast noauth", group="connection", summary="Resets the connection.")
def cmd_reset(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    s.reset(app)
    return Simple("RESET")


@command("CLIENT", -2, "", group="connection", summary="A container for client connection commands.")
def cmd_client(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    sub = args[1].lower()
    if sub == b"setname" and len(args) == 3:
        if not valid_client_name(args[2]) and args[2]:
            return ReplyError("ERR Client names cannot contain spaces, newlines or special characters.")
        s.name = args[2]
        return OK
    if sub == b"getname" and len(args) == 2:
        return s.name or None
    if sub == b"id" and len(args) == 2:
        return s.id
    if sub == b"setinfo" and len(args) == 4:
        attr = args[2].lower()
        if attr == b"lib-name":
            s.lib_name = args[3]
        elif attr == b"lib-ver":
            s.lib_ver = args[3]
        else:
            return ReplyError(f"ERR Unrecognized option '{args[2].decode(errors='replace')}'")
        return OK
    if sub == b"info" and len(args) == 2:
        return Verbatim(app.client_line(s) + "\n")
    if sub == b"list":
        return Verbatim("".join(app.client_line(c) + "\n" for c in app.sessions.values()))
    if sub in (b"no-evict", b"no-touch", b"reply") and len(args) == 3:
        if args[2].lower() not in (b"on", b"off", b"skip"):
            return SYNTAX
        return OK
    if sub == b"help":
        return ["CLIENT <subcommand> [<arg> ...]. Subcommands are:",
                "ID", "GETNAME", "SETNAME <name>", "SETINFO <LIB-NAME|LIB-VER> <value>",
                "INFO", "LIST", "NO-EVICT (ON|OFF)", "NO-TOUCH (ON|OFF)"]
    if sub in (b"setname", b"getname", b"id", b"setinfo", b"info", b"no-evict", b"no-touch"):
        return ReplyError(f"ERR wrong number of arguments for 'client|{sub.decode()}' command")
    return ReplyError(f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try CLIENT HELP.")


# ---------------------------------------------------------------------------
# server commands


@command("INFO", -1, "", group="server", summary="Returns information and statistics about the server.")
def cmd_info(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return Verbatim(info.render(app, [a.decode(errors="replace").lower() for a in args[1:]]))


@command("TIME", 1, "fast", group="server", summary="Returns the server time.")
def cmd_time(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    now = time.time_ns() // 1000
    return [b"%d" % (now // 1_000_000), b"%d" % (now % 1_000_000)]


@command("COMMAND", -1, "", group="server", summary="Returns detailed information about all commands.")
def cmd_command(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) == 1:
        return [command_info(c) for c in TABLE.values()]
    sub = args[1].lower()
    if sub == b"count":
        return len(TABLE)
    if sub == b"list":
        return [c.name.encode() for c in TABLE.values()]
    if sub == b"info":
        return [command_info(TABLE[a.lower()]) if a.lower() in TABLE else None for a in args[2:]]
    if sub == b"docs":
        wanted = [a.lower() for a in args[2:]] or list(TABLE)
        return {c.decode(): command_docs(TABLE[c]) for c in wanted if c in TABLE}
    if sub == b"getkeys":
        if len(args) < 3:
            return err_arity("command|getkeys")
        target = TABLE.get(args[2].lower())
        if target is None:
            return ReplyError("ERR Invalid command specified")
        if not arity_ok(target, len(args) - 2):
            return ReplyError("ERR Invalid number of arguments specified for command")
        keys = target.keys(args[2:])
        if not keys:
            return ReplyError("ERR The command has no key arguments")
        return keys
    if sub == b"help":
        return ["COMMAND <subcommand> [<arg> ...]. Subcommands are:", "(no subcommand)", "COUNT",
                "DOCS [<command-name> ...]", "GETKEYS <full-command>", "INFO [<command-name> ...]",
                "LIST"]
    return ReplyError(f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try COMMAND HELP.")


def command_info(c: Command) -> list[Any]:
    flags = [Simple(f) for f in c.flags if f in ("write", "readonly", "fast", "noauth", "loading",
                                                  "stale", "denyoom")]
    specs = []
    if c.first_key:
        specs.append({
            "begin_search": {"type": "index", "spec": {"index": c.first_key}},
            "find_keys": {"type": "range", "spec": {"lastkey": c.last_key - c.first_key if c.last_key > 0 else c.last_key,
                                                     "keystep": c.step, "limit": 0}},
        })
    return [c.name, c.arity, flags, c.first_key, c.last_key, c.step, [], [], specs, []]


def command_docs(c: Command) -> dict[str, Any]:
    return {"summary": c.summary or c.name.upper(), "since": "1.0.0", "group": c.group}
