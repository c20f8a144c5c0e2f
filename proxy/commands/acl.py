"""Named users: a subset of Redis 6's ACL, configured in the TOML file (``[[users]]``).

Theory of operation. Every command the proxy serves gets its ACL categories from its
command-table flags (``write`` → @write, ``readonly`` → @read, ``fast`` → @fast else
@slow, ``admin`` → @admin and @dangerous), its group (generic → @keyspace, string →
@string, connection → @connection) and, for the few where Redis says more (KEYS and
FLUSHALL are @dangerous...), ``EXTRA_CATEGORIES``. Subcommands of the containers
(CLIENT, CONFIG, COMMAND, ACL) are commands of their own, named ``client|list``.

A user's rules, in Redis's syntax, are applied in order to a set of allowed command
names, exactly as Redis applies them to its bitmap: ``+@read -get +client|id``. Key
patterns are Redis globs matched against every key argument. Passwords are kept as
SHA-256 hex digests and compared with ``hmac.compare_digest``.

Users come from the configuration: ACL SETUSER, DELUSER, LOAD and SAVE are refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from ..config import Config, ConfigError, User, password_hash
from ..protocol.glob import stringmatch
from ..protocol.resp import ReplyError
from .commanddata import SUBCOMMANDS
from .table import TABLE, UNSUPPORTED, Command

# Redis 7's categories, in ACL CAT's order
CATEGORIES = ("keyspace", "read", "write", "set", "sortedset", "list", "hash", "string",
              "bitmap", "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow",
              "blocking", "dangerous", "connection", "transaction", "scripting")

# Where Redis's categories say more than the flags and the group
EXTRA_CATEGORIES: dict[str, tuple[str, ...]] = {
    "keys": ("dangerous",),
    "flushall": ("keyspace", "dangerous"),
    "flushdb": ("keyspace", "dangerous"),
    "dbsize": ("keyspace",),
    "info": ("dangerous",),
    "role": ("admin", "dangerous"),
    "command": ("connection",),
    "client|list": ("admin", "dangerous"),
    "client|no-evict": ("admin", "dangerous"),
    "config|get": ("admin", "dangerous"),
    "acl|list": ("admin", "dangerous"),
    "acl|users": ("admin", "dangerous"),
    "acl|getuser": ("admin", "dangerous"),
}
GROUP_CATEGORIES = {"generic": "keyspace", "string": "string", "connection": "connection"}

NOPERM_KEY = ReplyError("NOPERM No permissions to access a key")


def _command_categories(c: Command) -> frozenset[str]:
    found = {"fast" if "fast" in c.flags else "slow"}
    if "write" in c.flags:
        found.add("write")
    if "readonly" in c.flags:
        found.add("read")
    if "admin" in c.flags:
        found.update(("admin", "dangerous"))
    if c.group in GROUP_CATEGORIES:
        found.add(GROUP_CATEGORIES[c.group])
    found.update(EXTRA_CATEGORIES.get(c.name, ()))
    return frozenset(found)


def command_categories() -> dict[str, frozenset[str]]:
    """Every command and subcommand the proxy serves → its categories."""
    table: dict[str, frozenset[str]] = {}
    for c in TABLE.values():
        base = _command_categories(c)
        subs = SUBCOMMANDS.get(c.name)
        if subs is None:
            table[c.name] = base
            continue
        container = {"slow", "connection"} if c.name in ("client", "command") else {"slow"}
        for sub in subs:
            full = f"{c.name}|{sub}"
            table[full] = frozenset(container | set(EXTRA_CATEGORIES.get(full, ())))
    return table


_CATEGORIES_CACHE: dict[str, frozenset[str]] = {}


def categories() -> dict[str, frozenset[str]]:
    if not _CATEGORIES_CACHE:
        _CATEGORIES_CACHE.update(command_categories())
    return _CATEGORIES_CACHE


class AclUser:
    """One user's state after its rules: what ``dispatch`` checks on every command."""

    __slots__ = ("name", "enabled", "nopass", "hashes", "allowed", "command_rules",
                 "patterns", "allkeys", "channels", "unrestricted")

    def __init__(self, name: str) -> None:
        self.name = name
        self.enabled = False
        self.nopass = False
        self.hashes: list[str] = []
        self.allowed: set[str] = set()
        self.command_rules: list[str] = []  # as ACL LIST describes them
        self.patterns: list[bytes] = []
        self.allkeys = False
        self.channels: list[str] = []
        self.unrestricted = False  # every command on every key: dispatch skips the checks

    # -- rules ----------------------------------------------------------------

    def apply(self, rules: Iterable[str]) -> None:
        for position, rule in enumerate(rules, 1):
            try:
                self._apply(rule)
            except ValueError as exc:
                raise ValueError(f"rule {position}: {exc}") from None
        table = categories()
        self.unrestricted = self.allkeys and len(self.allowed) == len(table)

    def _apply(self, rule: str) -> None:
        low = rule.lower()
        if low == "on":
            self.enabled = True
        elif low == "off":
            self.enabled = False
        elif low == "nopass":
            self.nopass = True
            self.hashes = []
        elif low == "resetpass":
            self.nopass = False
            self.hashes = []
        elif rule.startswith(">"):
            self._add_hash(password_hash(rule[1:].encode()))
        elif rule.startswith("<"):
            self._remove_hash(password_hash(rule[1:].encode()))
        elif rule.startswith("#"):
            self._add_hash(_checked_hash(rule[1:]))
        elif rule.startswith("!"):
            self._remove_hash(_checked_hash(rule[1:]))
        elif low == "allkeys" or rule == "~*":
            self.allkeys = True
            self.patterns = [b"*"]
        elif low == "resetkeys":
            self.allkeys = False
            self.patterns = []
        elif rule.startswith("~"):
            if not self.allkeys:
                self.patterns.append(rule[1:].encode())
        elif rule.startswith("%"):
            raise ValueError("read/write key permissions (%R~, %W~) are not supported; "
                             "use ~pattern")
        elif low in ("allchannels", "resetchannels") or rule.startswith("&"):
            self.channels = ["*"] if low == "allchannels" else [] if low == "resetchannels" \
                else self.channels + [rule[1:]]
        elif low in ("allcommands", "nocommands"):
            self._apply("+@all" if low == "allcommands" else "-@all")
        elif low == "reset":
            for word in ("resetpass", "resetkeys", "resetchannels", "off", "-@all"):
                self._apply(word)
        elif low == "sanitize-payload" or low == "skip-sanitize-payload":
            pass  # RESTORE payloads: no RESTORE here
        elif rule[:1] in ("+", "-"):
            self._command_rule(rule[0] == "+", low[1:])
        else:  # not echoed whole: it may be a password that lost its '>'
            raise ValueError(f"unknown rule starting with {rule[:2]!r}")

    def _add_hash(self, digest: str) -> None:
        self.nopass = False
        if digest not in self.hashes:
            self.hashes.append(digest)

    def _remove_hash(self, digest: str) -> None:
        self.nopass = False
        if digest in self.hashes:
            self.hashes.remove(digest)

    def _command_rule(self, allow: bool, what: str) -> None:
        table = categories()
        if what.startswith("@"):
            category = what[1:]
            if category == "all":
                names = set(table)
                self.command_rules.clear()  # everything before is overridden
            elif category in CATEGORIES:
                names = {name for name, cats in table.items() if category in cats}
            else:
                raise ValueError(f"unknown command category {what!r}")
        elif what in table:
            names = {what}
        elif what in SUBCOMMANDS:
            names = {name for name in table if name.startswith(what + "|")}
        elif what.split("|")[0] in UNSUPPORTED or what in TABLE:
            names = set()  # a Redis command refused here anyway
        else:
            raise ValueError(f"unknown command {what!r}")
        if allow:
            self.allowed |= names
        else:
            self.allowed -= names
        self.command_rules.append(("+" if allow else "-") + what)

    # -- checks ---------------------------------------------------------------

    def check_password(self, password: bytes) -> bool:
        """Constant time in the password's content: every hash is compared."""
        given = password_hash(password).encode()
        found = False
        for digest in self.hashes:
            found |= hmac.compare_digest(given, digest.encode())
        return found or self.nopass

    def denied(self, spec: Command, args: list[bytes], keys: list[bytes]) -> ReplyError | None:
        """The NOPERM error for this command, or None when the user may run it."""
        name = spec.name
        if name in SUBCOMMANDS and len(args) > 1:
            full = f"{name}|{args[1].lower().decode(errors='replace')}"
            if full in categories():
                name = full
        if name not in self.allowed and name in categories():
            return ReplyError(f"NOPERM User {self.name} has no permissions to run the "
                              f"'{name}' command")
        if keys and not self.allkeys:
            patterns = self.patterns
            for key in keys:
                if not any(stringmatch(p, key) for p in patterns):
                    return NOPERM_KEY
        return None

    # -- descriptions ---------------------------------------------------------

    def flags(self) -> list[str]:
        found = ["on" if self.enabled else "off"]
        if self.nopass:
            found.append("nopass")
        return found + ["sanitize-payload"]

    def commands_text(self) -> str:
        rules = self.command_rules
        if rules and rules[0] == "+@all":
            return " ".join(rules)
        return " ".join(["-@all", *[r for r in rules if r != "-@all"]])

    def keys_text(self) -> str:
        return " ".join("~" + p.decode(errors="replace") for p in self.patterns)

    def channels_text(self) -> str:
        return " ".join("&" + c for c in self.channels)

    def describe(self) -> str:
        """One ACL LIST line (passwords as their hashes, as Redis shows them)."""
        parts = ["user", self.name, *self.flags()]
        parts += ["#" + h for h in self.hashes]
        parts.append(self.keys_text() or "resetkeys")
        parts.append(self.channels_text() or "resetchannels")
        parts.append(self.commands_text())
        return " ".join(p for p in parts if p)

    def getuser(self) -> dict[str, Any]:
        return {"flags": self.flags(), "passwords": list(self.hashes),
                "commands": self.commands_text(), "keys": self.keys_text(),
                "channels": self.channels_text(), "selectors": []}


def _checked_hash(text: str) -> str:
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("a #hash must be 64 lowercase hex digits (a SHA-256)")
    return text


def build_users(config: Config) -> dict[str, AclUser]:
    """The users of ``config``: ``default`` (``--password``, or Redis's ``on nopass ~*
    &* +@all``) and every ``[[users]]`` entry; ConfigError names a bad rule."""
    users: dict[str, AclUser] = {}
    entries: list[User] = list(config.users)
    if not any(u.name == "default" for u in entries):
        entries.insert(0, User("default", "on nopass ~* &* +@all"))
    for entry in entries:
        user = AclUser(entry.name)
        user.apply(f"#{h}" for h in entry.password_hashes)
        try:
            user.apply(entry.rules.split())
        except ValueError as exc:
            raise ConfigError(f"user {entry.name!r}: {exc}") from None
        if entry.name == "default" and config.password:
            user.apply(["resetpass", ">" + config.password])
        users[entry.name] = user
    return users
