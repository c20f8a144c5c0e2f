"""Connection and server commands: PING, HELLO, AUTH, RESET, CLIENT, INFO, COMMAND,
CONFIG, TIME, ROLE...

COMMAND INFO and COMMAND DOCS answer what the replicas (redis-server 7) answer for the
commands redquorum serves (read at startup, proxy/commanddata.py), so that drivers read
correct arity, flags and key specs and interactive ``redis-cli`` builds its ``help`` from
them. Until a replica has answered, and for redquorum's own commands (RQ.*), commands are
described from the command table. The container commands list only the subcommands
served here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..protocol.glob import stringmatch
from ..protocol.resp import OK, PONG, ReplyError, SetReply, Simple, Verbatim
from . import info
from .acl import CATEGORIES, categories
from .commanddata import SUBCOMMANDS, CommandData
from .info import REDIS_VERSION
from .table import (
    SYNTAX,
    TABLE,
    Batch,
    Command,
    command,
    err_arity,
    parse_int,
    parse_int32,
)

if TYPE_CHECKING:  # pragma: no cover
    from .app import App
    from .session import Session


# ---------------------------------------------------------------------------
# connection commands


@command("PING", -1, "fast", group="connection", summary="Returns the server's liveliness response.")
def cmd_ping(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) > 2:
        return err_arity("ping")
    return args[1] if len(args) == 2 else PONG


@command("ECHO", 2, "fast", group="connection", summary="Returns the given string.")
def cmd_echo(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return args[1]


@command("QUIT", -1, "fast noauth", group="connection", summary="Closes the connection.")
def cmd_quit(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    s.closing = True
    return OK


@command("SELECT", 2, "fast", group="connection", summary="Changes the selected database.")
def cmd_select(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    db = parse_int32(args[1])
    if isinstance(db, ReplyError):
        return db
    if db != 0:
        return ReplyError("ERR DB index is out of range")
    return OK


def _authenticate(app: App, s: Session, user: bytes | None, password: bytes) -> Any:
    return app.authenticate(s, password, user)


@command("AUTH", -2, "fast noauth", group="connection", summary="Authenticates the connection.")
def cmd_auth(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) > 3:
        return SYNTAX
    if len(args) == 2:
        return _authenticate(app, s, None, args[1])
    return _authenticate(app, s, args[1], args[2])


NOAUTH_HELLO = ReplyError(
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time")


@command("HELLO", -1, "fast noauth", group="connection", summary="Handshakes with the server.")
def cmd_hello(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    """Redis's helloCommand: version, then every option, then AUTH, then SETNAME."""
    proto = 0
    if len(args) >= 2:
        ver = parse_int(args[1])
        if ver is None:
            return ReplyError("ERR Protocol version is not an integer or out of range")
        if ver not in (2, 3):
            return ReplyError("NOPROTO unsupported protocol version")
        proto = ver
    user = password = name = None
    i = 2
    while i < len(args):
        opt = args[i].lower()
        more = len(args) - i - 1
        if opt == b"auth" and more >= 2:
            user, password = args[i + 1], args[i + 2]
            i += 3
        elif opt == b"setname" and more >= 1:
            name = args[i + 1]
            i += 2
        else:
            return ReplyError(f"ERR Syntax error in HELLO option '{args[i].decode(errors='replace')}'")
    if user is not None and password is not None:
        result = _authenticate(app, s, user, password)
        if isinstance(result, ReplyError):
            return result
    if not s.authenticated:
        return NOAUTH_HELLO
    if name is not None:
        if not valid_client_name(name):
            return BAD_NAME
        s.name = name
    if proto:
        s.proto = proto
    return {
        "server": "redis",
        "version": REDIS_VERSION,
        "proto": s.proto,
        "id": s.id,
        "mode": "standalone",
        "role": "master",
        "modules": [],
    }


BAD_NAME = ReplyError("ERR Client names cannot contain spaces, newlines or special characters.")


def valid_client_name(name: bytes) -> bool:
    """Redis's rule (an empty name clears it)."""
    return all(33 <= c <= 126 for c in name)


@command("RESET", 1, "fast noauth", group="connection", summary="Resets the connection.")
def cmd_reset(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    s.reset(app)
    return Simple("RESET")


# ---------------------------------------------------------------------------
# container commands: CLIENT, COMMAND, CONFIG


def _subcommand(container: str, args: list[bytes]) -> tuple[str, ReplyError | None]:
    """The subcommand's name, or the error Redis gives before running it."""
    sub = args[1].lower().decode(errors="replace")
    full = f"{container}|{sub}"
    arity = SUBCOMMANDS[container].get(sub)
    if arity is None:
        if full in REDIS_SUBCOMMANDS:
            return sub, _refused(container, sub)
        return sub, ReplyError(f"ERR unknown subcommand '{args[1].decode(errors='replace')[:128]}'. "
                               f"Try {container.upper()} HELP.")
    if (arity > 0 and len(args) != arity) or len(args) < -arity:
        return sub, err_arity(full)
    return sub, None


def subcommand_error(container: str, args: list[bytes]) -> ReplyError | None:
    """The error Redis gives for a container command's subcommand before running it."""
    return _subcommand(container, args)[1]


def _refused(container: str, sub: str) -> ReplyError:
    name = f"{container.upper()} {sub.upper()}"
    if container == "acl":
        return ReplyError(f"ERR redquorum does not support '{name}': users are defined by the "
                          "[[users]] entries of the proxy's config file (and --password for "
                          "the default user)")
    if container == "config":
        return ReplyError(f"ERR redquorum does not support '{name}': the proxy is configured with "
                          "`redquorum serve` flags, its config file or REDQUORUM_* variables, and "
                          "each replica with its own redis.conf")
    return ReplyError(f"ERR redquorum does not support '{name}' (see the README's command list)")


def _help(lines: list[str]) -> list[Simple]:
    return [Simple(line) for line in lines]


@command("CLIENT", -2, "", group="connection", summary="A container for client connection commands.")
def cmd_client(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    sub, error = _subcommand("client", args)
    if error is not None:
        return error
    if sub == "setname":
        if not valid_client_name(args[2]):
            return BAD_NAME
        s.name = args[2]
        return OK
    if sub == "getname":
        return s.name or None
    if sub == "id":
        return s.id
    if sub == "setinfo":
        attr, value = args[2].lower(), args[3]
        if attr not in (b"lib-name", b"lib-ver"):
            return ReplyError(f"ERR Unrecognized option '{args[2].decode(errors='replace')}'")
        if not valid_client_name(value):
            return ReplyError(f"ERR {attr.upper().decode()} cannot contain spaces, newlines or "
                              "special characters.")
        if attr == b"lib-name":
            s.lib_name = value
        else:
            s.lib_ver = value
        return OK
    if sub == "info":
        return Verbatim(app.client_line(s) + "\n")
    if sub == "list":
        return _client_list(app, args)
    if sub in ("no-evict", "no-touch"):
        if args[2].lower() not in (b"on", b"off"):
            return SYNTAX
        return OK
    return _help(CLIENT_HELP)


def _client_list(app: App, args: list[bytes]) -> Any:
    sessions = sorted(app.sessions.values(), key=lambda x: x.id)
    if len(args) == 4 and args[2].lower() == b"type":
        kind = args[3].lower()
        if kind not in (b"normal", b"master", b"replica", b"slave", b"pubsub"):
            return ReplyError(f"ERR Unknown client type '{args[3].decode(errors='replace')}'")
        if kind != b"normal":
            sessions = []
    elif len(args) > 3 and args[2].lower() == b"id":
        ids = set()
        for raw in args[3:]:
            ident = parse_int(raw)
            if ident is None or ident < 1:
                return ReplyError("ERR Invalid client ID")
            ids.add(ident)
        sessions = [x for x in sessions if x.id in ids]
    elif len(args) != 2:
        return SYNTAX
    return Verbatim("".join(app.client_line(x) + "\n" for x in sessions))


CLIENT_HELP = [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "    * ID <id> [<id> ...]",
    "      Return clients with the given ids.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
    "HELP",
    "    Prints this help.",
]


@command("COMMAND", -1, "", group="server", summary="Returns detailed information about all commands.")
def cmd_command(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    views = _views(app.commanddata)
    if len(args) == 1:
        return list(views.info.values())
    sub, error = _subcommand("command", args)
    if error is not None:
        return error
    if sub == "count":
        return len(TABLE)
    if sub == "list":
        return _command_list(views, args)
    if sub == "info":
        if len(args) == 2:
            return list(views.info.values())
        return [views.lookup_info(a) for a in args[2:]]
    if sub == "docs":
        if len(args) == 2:
            return views.docs
        found = {}
        for a in args[2:]:
            name = a.lower().decode(errors="replace")
            doc = views.lookup_docs(name)
            if doc is not None:
                found[name] = doc
        return found
    if sub in ("getkeys", "getkeysandflags"):
        return _getkeys(views, args[2:], sub == "getkeysandflags")
    return _help(COMMAND_HELP)


COMMAND_HELP = [
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
    "HELP",
    "    Prints this help.",
]


def _command_list(views: _Views, args: list[bytes]) -> Any:
    names: list[str] = []
    for entry in views.info.values():
        names.append(entry[0])
        names += [sub[0] for sub in entry[9]]
    if len(args) == 2:
        return names
    if len(args) != 5 or args[2].lower() != b"filterby":
        return SYNTAX
    kind, value = args[3].lower(), args[4]
    if kind == b"module":
        return []
    if kind == b"aclcat":
        category = "@" + value.decode(errors="replace").lower()
        return [n for n in names if category in views.info_by_name(n)[6]]
    if kind == b"pattern":
        return [n for n in names if stringmatch(value, n.encode(), nocase=True)]
    return SYNTAX


def _getkeys(views: _Views, argv: list[bytes], with_flags: bool) -> Any:
    """Redis's getKeysSubcommandImpl, from the key specs."""
    c = TABLE.get(argv[0].lower())
    entry = views.info.get(c.name) if c is not None else None
    if c is not None and entry is not None and entry[9] and len(argv) > 1:
        entry = views.sub_info.get(f"{c.name}|{argv[1].lower().decode(errors='replace')}")
    if entry is None:
        return ReplyError("ERR Invalid command specified")
    specs = entry[8]
    if not specs:
        return ReplyError("ERR The command has no key arguments")
    arity = entry[1]
    if (arity > 0 and arity != len(argv)) or len(argv) < -arity:
        return ReplyError("ERR Invalid number of arguments specified for command")
    found: list[Any] = []
    for spec in specs:
        positions = _spec_positions(spec, len(argv))
        for pos in positions:
            if with_flags:
                found.append([argv[pos], _key_flags(entry[0], spec, argv)])
            else:
                found.append(argv[pos])
    if not found:
        return ReplyError("ERR Invalid arguments specified for command")
    return found


def _spec_positions(spec: dict[str, Any], argc: int) -> list[int]:
    begin, find = spec["begin_search"], spec["find_keys"]
    if begin["type"] != "index" or find["type"] != "range":
        return []
    first = begin["spec"]["index"]
    if first >= argc:
        return []
    lastkey, step = find["spec"]["lastkey"], find["spec"]["keystep"]
    last = first + lastkey if lastkey >= 0 else argc + lastkey
    return list(range(first, min(last, argc - 1) + 1, step))


def _key_flags(name: str, spec: dict[str, Any], argv: list[bytes]) -> SetReply:
    if name == "set":  # Redis's setGetKeys: GET turns an overwrite into a read-write
        get = any(a.lower() == b"get" for a in argv[3:])
        return SetReply([Simple("RW"), Simple("access"), Simple("update")] if get
                        else [Simple("OW"), Simple("update")])
    return SetReply(f for f in spec["flags"] if f != "variable_flags")


@command("CONFIG", -2, "", group="server", summary="A container for server configuration commands.")
def cmd_config(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    sub, error = _subcommand("config", args)
    if error is not None:
        return error
    if sub == "get":
        values = config_values(app)
        found: dict[str, str] = {}
        for pattern in args[2:]:
            for name, value in values.items():
                if stringmatch(pattern, name.encode(), nocase=True):
                    found[name] = value
        return found
    if sub == "resetstat":
        app.info_stats.reset()
        app.total_commands = 0
        app.total_connections = 0
        return OK
    return _help(CONFIG_HELP)


CONFIG_HELP = [
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "HELP",
    "    Prints this help.",
]

def config_values(app: App) -> dict[str, str]:
    """Read-only values clients and tools ask for, as the proxy (and its replicas) behave."""
    host, port = app.listen_address or app.config.listen
    return {
        "save": "",
        "appendonly": "yes",
        "appendfsync": "everysec",
        "databases": "1",
        "maxmemory": "0",
        "maxmemory-policy": "noeviction",
        "maxclients": str(app.config.maxclients),
        "timeout": f"{app.config.timeout:g}",
        "client-output-buffer-limit": _output_limit_text(app.config.output_limit),
        "port": str(port),
        "bind": host,
        "cluster-enabled": "no",
        "notify-keyspace-events": "",
        "proto-max-bulk-len": "536870912",
        "lua-time-limit": "5000",
        "busy-reply-threshold": "5000",
        "slowlog-log-slower-than": "10000",
        "requirepass": "",  # never the password itself
        "protected-mode": "yes" if app.config.protected_mode else "no",
    }


def _output_limit_text(limit: Any) -> str:
    return (f"normal {limit.hard} {limit.soft} {limit.soft_seconds:g} replica 0 0 0 "
            "pubsub 0 0 0")


# ---------------------------------------------------------------------------
# ACL: inspection of the configured users


@command("ACL", -2, "", group="server", summary="A container for Access List Control commands.")
def cmd_acl(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    sub, error = _subcommand("acl", args)
    if error is not None:
        return error
    if sub == "whoami":
        return s.user.name.encode()
    if sub == "users":
        return sorted(name.encode() for name in app.users)
    if sub == "list":
        return [app.users[name].describe().encode() for name in sorted(app.users)]
    if sub == "getuser":
        user = app.users.get(args[2].decode(errors="replace"))
        return None if user is None else user.getuser()
    if sub == "cat":
        if len(args) == 2:
            return list(CATEGORIES)
        if len(args) > 3:
            return err_arity("acl|cat")
        wanted = args[2].decode(errors="replace").lower()
        if wanted not in CATEGORIES:
            return ReplyError(f"ERR Unknown category '{args[2].decode(errors='replace')}'")
        return sorted(name for name, cats in categories().items() if wanted in cats)
    return _help(ACL_HELP)


ACL_HELP = [
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "GETUSER <username>",
    "    Get the user's details.",
    "LIST",
    "    Show users details in config file format.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
    "(Users are defined in the proxy's config file: SETUSER, DELUSER, LOAD and SAVE are "
    "refused.)",
]


# ---------------------------------------------------------------------------
# server commands


@command("INFO", -1, "", group="server", summary="Returns information and statistics about the server.")
def cmd_info(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return Verbatim(info.render(app, [a.decode(errors="replace").lower() for a in args[1:]]))


@command("TIME", 1, "fast", group="server", summary="Returns the server time.")
def cmd_time(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    now = time.time_ns() // 1000
    return [b"%d" % (now // 1_000_000), b"%d" % (now % 1_000_000)]


@command("ROLE", 1, "fast", group="server", summary="Returns the replication role.")
def cmd_role(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return [b"master", 0, []]


# ---------------------------------------------------------------------------
# COMMAND INFO / DOCS data

# Subcommands served by redquorum that redis-server 7.0 does not have (7.2 added them).
EXTRA_SUBCOMMAND_INFO: dict[str, list[Any]] = {
    "client|setinfo": ["client|setinfo", 4, SetReply([Simple("noscript"), Simple("loading"),
                                                      Simple("stale")]),
                       0, 0, 0, SetReply([Simple("@slow"), Simple("@connection")]), SetReply(),
                       SetReply(), SetReply()],
    "client|no-touch": ["client|no-touch", 3, SetReply([Simple("noscript"), Simple("loading"),
                                                        Simple("stale")]),
                        0, 0, 0, SetReply([Simple("@slow"), Simple("@connection")]), SetReply(),
                        SetReply(), SetReply()],
}
EXTRA_SUBCOMMAND_DOCS: dict[str, dict[str, Any]] = {
    "client|setinfo": {
        "summary": "Records the name or version of the client library.", "since": "7.2.0",
        "group": "connection", "complexity": "O(1)",
        "arguments": [{"name": "attr", "type": "oneof", "arguments": [
            {"name": "libname", "type": "string", "token": "LIB-NAME"},
            {"name": "libver", "type": "string", "token": "LIB-VER"}]}]},
    "client|no-touch": {
        "summary": "Accepted for compatibility: redquorum keeps no access statistics per key.",
        "since": "7.2.0", "group": "connection", "complexity": "O(1)",
        "arguments": [{"name": "enabled", "type": "oneof", "arguments": [
            {"name": "on", "type": "pure-token", "token": "ON"},
            {"name": "off", "type": "pure-token", "token": "OFF"}]}]},
}

# Every Redis 7.0 subcommand of the containers served here (to tell "unsupported" from "unknown").
REDIS_SUBCOMMANDS = {
    f"client|{s}" for s in "caching getname getredir help id info kill list no-evict pause "
    "reply setname tracking trackinginfo unblock unpause".split()
} | {
    f"command|{s}" for s in "count docs getkeys getkeysandflags help info list".split()
} | {f"config|{s}" for s in "get help resetstat rewrite set".split()
     } | {f"acl|{s}" for s in "cat deluser dryrun genpass getuser help list load log save setuser "
          "users whoami".split()}


class _Views:
    """COMMAND's answers for the data loaded so far, built once per load of the
    ``CommandData`` (kept in its ``derived``): what the replica answered where it did,
    else what the command table knows."""

    __slots__ = ("info", "docs", "sub_info")

    def __init__(self, data: CommandData) -> None:
        self.info: dict[str, list[Any]] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.sub_info: dict[str, list[Any]] = {}
        for c in TABLE.values():
            self.info[c.name] = entry = _info_entry(c, data.info.get(c.name))
            self.docs[c.name] = _docs_entry(c, data.docs.get(c.name))
            for sub in entry[9]:
                self.sub_info[sub[0]] = sub

    def lookup_info(self, raw: bytes) -> list[Any] | None:
        name = raw.lower().decode(errors="replace")
        return self.sub_info.get(name) if "|" in name else self.info.get(name)

    def info_by_name(self, name: str) -> list[Any]:
        found = self.lookup_info(name.encode())
        assert found is not None
        return found

    def lookup_docs(self, name: str) -> dict[str, Any] | None:
        if "|" in name:
            doc = self.docs.get(name.split("|", 1)[0])
            return doc.get("subcommands", {}).get(name) if doc is not None else None
        return self.docs.get(name)


def _views(data: CommandData) -> _Views:
    views = data.derived
    if views is None:
        views = data.derived = _Views(data)
    return views


def _info_entry(c: Command, fetched: list[Any] | None) -> list[Any]:
    entry = list(fetched) if fetched is not None else _generic_info(c)
    served = SUBCOMMANDS.get(c.name)
    if served:
        subs = list(entry[9]) if fetched is not None else []
        known = {sub[0] for sub in subs}
        for sub, arity in served.items():
            full = f"{c.name}|{sub}"
            if full not in known:
                subs.append(EXTRA_SUBCOMMAND_INFO.get(full) or _generic_sub_info(full, arity))
        entry[9] = subs
    return entry


def _generic_info(c: Command) -> list[Any]:
    """COMMAND INFO from the command table (redquorum's own commands, and Redis's until
    a replica has answered)."""
    flags = SetReply(Simple(f) for f in c.flags)
    specs = SetReply()
    if c.first_key:
        lastkey = c.last_key - c.first_key if c.last_key > 0 else c.last_key
        write = "write" in c.flags
        specs.append({
            "flags": SetReply([Simple("RW"), Simple("update")] if write
                              else [Simple("RO"), Simple("access")]),
            "begin_search": {"type": "index", "spec": {"index": c.first_key}},
            "find_keys": {"type": "range", "spec": {"lastkey": lastkey, "keystep": c.step,
                                                    "limit": 0}},
        })
    cats = categories().get(c.name, frozenset({"slow"}))
    acl_categories = SetReply(Simple("@" + cat) for cat in CATEGORIES if cat in cats)
    return [c.name, c.arity, flags, c.first_key, c.last_key, c.step, acl_categories, SetReply(),
            specs, SetReply()]


def _generic_sub_info(full: str, arity: int) -> list[Any]:
    cats = categories().get(full, frozenset({"slow"}))
    acl_categories = SetReply(Simple("@" + cat) for cat in CATEGORIES if cat in cats)
    return [full, arity, SetReply(), 0, 0, 0, acl_categories, SetReply(), SetReply(), SetReply()]


def _docs_entry(c: Command, fetched: dict[str, Any] | None) -> dict[str, Any]:
    if fetched is not None:
        doc = dict(fetched)
    else:
        doc = _generic_docs(c.summary or c.name.upper(), c.group)
    served = SUBCOMMANDS.get(c.name)
    if served:
        subs = dict(doc.get("subcommands", {}))
        for sub in served:
            full = f"{c.name}|{sub}"
            if full not in subs:
                subs[full] = (EXTRA_SUBCOMMAND_DOCS.get(full)
                              or _generic_docs(f"{c.name.upper()} {sub.upper()}", c.group))
        doc["subcommands"] = subs
    return doc


def _generic_docs(summary: str, group: str) -> dict[str, Any]:
    return {"summary": summary, "since": "0.1.0", "group": group, "complexity": "O(1)"}
