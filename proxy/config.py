"""Configuration: defaults < TOML file < REDQUORUM_* environment < command-line flags.

Everything is validated at startup into one frozen ``Config``; a bad value stops the
program with one line naming the problem (``ConfigError``), before anything listens.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODES = ("causal", "lww")
TLS_AUTH_CLIENTS = ("yes", "no", "optional")
REPLICA_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_USER_NAME = re.compile(r"^[!-~]{1,128}$")  # Redis: no spaces or control characters
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2,
          "g": 1000**3, "gb": 1024**3}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Replica:
    id: str
    host: str
    port: int
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    tls: bool = False
    tls_ca_cert_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class User:
    """A ``[[users]]`` entry: its password as SHA-256 (as Redis's ACL keeps it) and its
    rules in Redis's ACL syntax, parsed against the command table by proxy/commands/acl.py."""

    name: str
    rules: str = field(default="", repr=False)  # may hold ">password" rules
    password_hashes: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class OutputLimit:
    """Redis's ``client-output-buffer-limit`` for normal clients: 0 means no limit."""

    hard: int
    soft: int
    soft_seconds: float


@dataclass(frozen=True)
class Config:
    """The validated settings; build() makes it, with the defaults of ``SETTINGS``."""

    replicas: tuple[Replica, ...]
    listen: tuple[str, int]
    metrics_listen: tuple[str, int] | None
    n: int
    w: int
    r: int
    min_w: int  # the lowest w a connection may choose (RQ.CONSISTENCY)
    mode: str
    replica_timeout: float  # seconds a replica has to answer a request once sent
    tombstone_grace: float  # seconds tombstones and expired values are kept
    sibling_soft_limit: int
    sibling_hard_limit: int
    heartbeat_interval: float
    hint_window: float  # seconds a replica may be down and still get hints
    sloppy_quorum: bool  # fallbacks stand in for homes that are down (when replicas > n)
    password: str | None = field(repr=False)  # the default user's, when set
    context_secret: str | None = field(repr=False)  # signs RQ contexts; else one kept on the replicas
    log_keys: bool  # log lines may name keys (else only their length and a hash)
    workers: int
    users: tuple[User, ...]
    protected_mode: bool
    maxclients: int
    timeout: float  # idle seconds before a client is closed; 0: never
    output_limit: OutputLimit
    tls_cert_file: str | None
    tls_key_file: str | None
    tls_ca_cert_file: str | None
    tls_auth_clients: str
    tls_protocols: str | None
    tls_ciphers: str | None
    tls_ciphersuites: str | None
    pbs_t_ms: tuple[float, ...]  # t of the exported P(consistent)
    pbs_interval: float  # seconds between recomputations of the PBS estimate
    antientropy_enabled: bool
    antientropy_interval: float  # seconds between rounds
    antientropy_keys_per_second: float  # objects compared per second, at most
    antientropy_rebuild_interval: float  # seconds between rebuilds of a replica's digests

    @property
    def sloppy(self) -> bool:
        """A sloppy quorum is in effect: asked for, and there are nodes beyond the n homes."""
        return self.sloppy_quorum and len(self.replicas) > self.n

    @property
    def tls(self) -> bool:
        """TLS on the client listener: a certificate and its key were given."""
        return bool(self.tls_cert_file and self.tls_key_file)

    def describe(self) -> str:
        overlap = "w + r > n: reads see the latest acknowledged write" if self.w + self.r > self.n \
            else "w + r <= n: reads may miss acknowledged writes"
        sloppy = ("; sloppy quorum: fallbacks stand in for homes that are down, and while "
                  "they hold writes a read may miss them" if self.sloppy else "")
        return f"n={self.n} w={self.w} r={self.r} mode={self.mode} ({overlap}{sloppy})"


def parse_address(text: str, what: str = "address") -> tuple[str, int]:
    text = text.strip()
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", text) or re.match(r"^([^:\s]+):(\d+)$", text)
    if not m:
        raise ConfigError(f"{what} {text!r} is not HOST:PORT")
    port = int(m.group(2))
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {text!r} has a port outside 0..65535")
    return m.group(1), port


def parse_replica(text: str) -> Replica:
    ident, sep, address = text.partition("=")
    if not sep:
        raise ConfigError(f"replica {text!r} is not ID=HOST:PORT")
    host, port = parse_address(address, f"replica {ident!r} address")
    return Replica(ident.strip(), host, port)


def _int(value: Any, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


@dataclass(frozen=True)
class Setting:
    """One setting: its TOML section (the key is its name), its default as a user would
    write it (None: unset, or derived from other settings as ``shown`` says), and its help."""

    section: str
    default: Any
    help: str
    shown: str | None = None  # the default as help states it, when not the value itself
    key: str | None = None  # the TOML key, when not the name (a section of its own drops its prefix)

    def shown_default(self) -> str | None:
        if self.shown is not None:
            return self.shown
        return None if self.default is None else _format_value(self.default)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(_format_value(v) for v in value)
    return str(value)


# The one table of settings: TOML [section] name, environment REDQUORUM_<NAME>, flag
# --<name-with-dashes>. build() takes its defaults from here and proxy/cli.py its help.
SETTINGS: dict[str, Setting] = {
    "listen": Setting("proxy", "127.0.0.1:6379", "where clients connect"),
    "metrics_listen": Setting("proxy", None, "serve Prometheus /metrics here", shown="off"),
    "password": Setting("proxy", None, "require clients to AUTH with this"),
    "context_secret": Setting(
        "proxy", None, "signs RQ contexts, the same on every proxy of the cluster "
        "(at least 16 characters)", shown="a secret kept on the replicas"),
    "log_keys": Setting("proxy", False, "log lines may name keys; else only a key's length "
                        "and hash"),
    "workers": Setting("proxy", 1, "processes sharing the listening port"),
    "n": Setting("quorum", None, "replicas per key", shown="min(3, replicas)"),
    "w": Setting("quorum", None, "write quorum: acks before a write succeeds",
                 shown="a majority of n"),
    "r": Setting("quorum", None, "read quorum: answers before a read succeeds",
                 shown="a majority of n"),
    "min_w": Setting("quorum", None, "the lowest write quorum a connection may choose with "
                     "RQ.CONSISTENCY; read-modify-write commands read n - min_w + 1 replicas",
                     shown="w"),
    "mode": Setting("quorum", "causal", "causal (siblings) or lww (last write wins)"),
    "replica_timeout": Setting("quorum", 0.5, "seconds a replica has to answer a request"),
    "tombstone_grace": Setting("quorum", 3600.0, "seconds tombstones and expired values are "
                               "kept"),
    "sibling_soft_limit": Setting("quorum", 25, "warn (log, metric) above this many siblings"),
    "sibling_hard_limit": Setting("quorum", 100, "refuse writes to a key with this many "
                                  "siblings until resolved"),
    "heartbeat_interval": Setting("proxy", 1.0, "seconds between freshness canary writes"),
    "hint_window": Setting("quorum", 10800.0, "seconds a replica may be down and still get "
                           "hints; past it they are dropped and anti-entropy catches it up"),
    "sloppy_quorum": Setting("quorum", True, "with more replicas than n, the next live nodes "
                             "of a key's walk stand in for its homes that are down (counting "
                             "toward w and r) and hand the writes home when they return"),
    "protected_mode": Setting("proxy", "yes", "refuse to start on a non-loopback address "
                              "without a password"),
    "maxclients": Setting("proxy", 10000, "most client connections at once"),
    "timeout": Setting("proxy", 0.0, "close clients idle this many seconds; 0: never"),
    "client_output_buffer_limit": Setting(
        "proxy", "256mb 64mb 60", "close a client whose unsent replies pass HARD, or SOFT "
        "for SECONDS"),
    "tls_cert_file": Setting("proxy", None, "TLS on the client listener with this "
                             "certificate (and tls_key_file)"),
    "tls_key_file": Setting("proxy", None, "the private key of tls_cert_file"),
    "tls_ca_cert_file": Setting("proxy", None, "CA certificates that client certificates "
                                "must chain to"),
    "tls_auth_clients": Setting("proxy", "yes", "require client certificates: yes, no or "
                                "optional"),
    "tls_protocols": Setting("proxy", None, "TLS versions accepted",
                             shown="TLSv1.2 TLSv1.3"),
    "tls_ciphers": Setting("proxy", None, "OpenSSL cipher list for TLSv1.2 and below"),
    "tls_ciphersuites": Setting("proxy", None, "OpenSSL TLSv1.3 cipher suites"),
    "pbs_t_ms": Setting("proxy", (0.0, 1.0, 5.0, 10.0, 100.0), "t (ms after a write "
                        "commits) of the exported PBS consistency probabilities"),
    "pbs_interval": Setting("proxy", 10.0, "seconds between recomputations of the PBS "
                            "estimate"),
    "antientropy_enabled": Setting("antientropy", True, "run anti-entropy rounds: compare the "
                                   "replicas' digests and repair what differs", key="enabled"),
    "antientropy_interval": Setting("antientropy", 10.0, "seconds between anti-entropy rounds",
                                    key="interval"),
    "antientropy_keys_per_second": Setting("antientropy", 5000.0, "objects anti-entropy "
                                           "compares per second, at most", key="keys_per_second"),
    "antientropy_rebuild_interval": Setting(
        "antientropy", 3600.0, "seconds between rebuilds of each replica's digests from its "
        "data; 0: only when missing", key="rebuild_interval"),
}


def help_text(name: str, shown_default: str | None = None) -> str:
    """A setting's help for its flag: what it does, its default, its environment variable.
    ``shown_default`` states a command's own default in place of the table's."""
    setting = SETTINGS[name]
    shown = shown_default if shown_default is not None else setting.shown_default()
    env = "env REDQUORUM_" + name.upper()
    return f"{setting.help} ({'default ' + shown + '; ' if shown is not None else ''}{env})"


def _default(raw: Mapping[str, Any], name: str) -> Any:
    return raw.get(name, SETTINGS[name].default)


def load(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    replicas: list[Replica] | None = None,
) -> Config:
    """Build and validate a Config. ``flags`` holds only the flags the user gave.

    ``defaults`` (a command's own, such as ``up``'s metrics address) sit above the table's
    and below the file; ``replicas``, when given, replace every other source of replicas."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = dict(defaults or {})
    configured: list[Replica] | None = None
    users: list[User] = []

    path = flags.get("config") or environ.get("REDQUORUM_CONFIG") or config_file
    if path:
        doc = _read_toml(path)
        for name, setting in SETTINGS.items():
            table = doc.get(setting.section, {})
            key = setting.key or name
            for spelling in (key, key.replace("_", "-")):  # Redis spells tls-cert-file
                if spelling in table:
                    raw[name] = table[spelling]
        unknown = set(doc) - {"proxy", "quorum", "replicas", "users", "antientropy"}
        if unknown:
            raise ConfigError(f"{path}: unknown section [{sorted(unknown)[0]}]")
        if "replicas" in doc:
            configured = [_replica_from_toml(entry, path) for entry in doc["replicas"]]
        users = [_user_from_toml(entry, path) for entry in doc.get("users", [])]

    for name in SETTINGS:
        env = environ.get("REDQUORUM_" + name.upper())
        if env is not None and env != "":
            raw[name] = env
    env_replicas = environ.get("REDQUORUM_REPLICAS")
    if env_replicas:
        configured = [parse_replica(x) for x in env_replicas.split(",") if x.strip()]

    for name in SETTINGS:
        if flags.get(name) is not None:
            raw[name] = flags[name]
    if flags.get("replica"):
        configured = [parse_replica(x) for x in flags["replica"]]

    return build(raw, replicas if replicas is not None else configured or [], users)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _replica_from_toml(entry: Any, path: str) -> Replica:
    if not isinstance(entry, dict) or "id" not in entry or "address" not in entry:
        raise ConfigError(f"{path}: every [[replicas]] needs id and address")
    host, port = parse_address(str(entry["address"]), f"replica {entry['id']!r} address")
    known = {"id", "address", "password", "username", "tls", "tls_ca_cert_file",
             "tls_cert_file", "tls_key_file"}
    extra = sorted(set(entry) - known)
    if extra:
        raise ConfigError(f"{path}: unknown key {extra[0]!r} in [[replicas]] {entry['id']!r}")
    tls = entry.get("tls", False)
    if not isinstance(tls, bool):
        raise ConfigError(f"{path}: replica {entry['id']!r}: tls must be true or false")

    def text(key: str) -> str | None:
        value = entry.get(key)
        return None if value is None else str(value)

    if bool(entry.get("tls_cert_file")) != bool(entry.get("tls_key_file")):
        raise ConfigError(f"{path}: replica {entry['id']!r}: tls_cert_file and tls_key_file "
                          "go together")
    return Replica(str(entry["id"]), host, port, text("password"), text("username"), tls,
                   text("tls_ca_cert_file"), text("tls_cert_file"), text("tls_key_file"))


def _user_from_toml(entry: Any, path: str) -> User:
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(f"{path}: every [[users]] needs a name")
    name = str(entry["name"])
    if not _USER_NAME.match(name):
        raise ConfigError(f"{path}: user name {name!r} must be 1-128 printable characters "
                          "without spaces")
    extra = sorted(set(entry) - {"name", "password", "rules"})
    if extra:
        raise ConfigError(f"{path}: unknown key {extra[0]!r} in [[users]] {name!r}")
    rules = entry.get("rules", "")
    if not isinstance(rules, str):
        raise ConfigError(f"{path}: user {name!r}: rules must be a string")
    password = entry.get("password")
    hashes = () if password is None else (password_hash(str(password).encode()),)
    return User(name, rules, hashes)


def password_hash(password: bytes) -> str:
    """What Redis's ACL stores of a password (``#<hex>`` in ACL LIST)."""
    return hashlib.sha256(password).hexdigest()


def parse_size(text: str, name: str) -> int:
    """Redis's memtoll: ``64mb``, ``1gb``, ``100k``, plain bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", text.lower())
    if not m or m.group(2) not in _UNITS:
        raise ConfigError(f"{name}: {text!r} is not a size such as 64mb")
    return int(m.group(1)) * _UNITS[m.group(2)]


def parse_output_limit(text: Any) -> OutputLimit:
    """``<hard> <soft> <soft seconds>``, optionally after the class ``normal``."""
    words = str(text).split()
    if words and words[0].lower() == "normal":
        words = words[1:]
    if len(words) != 3:
        raise ConfigError(f"client-output-buffer-limit {text!r} is not '<hard> <soft> <seconds>' "
                          "(e.g. '256mb 64mb 60')")
    name = "client-output-buffer-limit"
    hard, soft = parse_size(words[0], name), parse_size(words[1], name)
    seconds = _float(words[2], name + " seconds")
    if seconds < 0:
        raise ConfigError(f"{name}: seconds must not be negative")
    return OutputLimit(hard, soft, seconds)


def _yes_no(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "1", "on"):
        return True
    if text in ("no", "false", "0", "off"):
        return False
    raise ConfigError(f"{name} must be yes or no, got {value!r}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_user_open(password: str | None, users: list[User] | tuple[User, ...]) -> bool:
    """True when anyone may connect as the default user without a password (Redis's
    ``on nopass``): no ``--password``, and no ``[[users]]`` entry named ``default`` that
    closes it. Like Redis's ``user`` directive, an entry starts from nothing (off, no
    password), so an entry for ``default`` is open only with ``on`` and ``nopass``."""
    if password:
        return False
    for user in users:
        if user.name != "default":
            continue
        enabled = nopass = False
        for word in user.rules.lower().split():
            if word in ("on", "off"):
                enabled = word == "on"
            elif word == "nopass":
                nopass = True
            elif word.startswith((">", "#")) or word in ("reset", "resetpass"):
                nopass = False
                if word == "reset":
                    enabled = False
        return enabled and nopass
    return True


def _times(value: Any, name: str) -> tuple[float, ...]:
    """A list of milliseconds: a TOML array, or comma-separated from the environment or a flag."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{name} must be a list of milliseconds, got {value!r}")
    times = tuple(_float(item, name) for item in items if not isinstance(item, str) or item.strip())
    if not times or len(times) > 32 or any(not 0 <= t < 1e9 for t in times):
        raise ConfigError(f"{name} must list 1 to 32 times in 0..1e9 ms, got {value!r}")
    return tuple(sorted(set(times)))


def build(raw: Mapping[str, Any], replicas: list[Replica], users: list[User] | None = None
          ) -> Config:
    ids = [r.id for r in replicas]
    for ident in ids:
        if not REPLICA_ID.match(ident):
            raise ConfigError(f"replica id {ident!r} must be 1-64 of A-Z a-z 0-9 _ . -")
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"duplicate replica id {dupes[0]!r}")
    addresses = [(r.host, r.port) for r in replicas]
    same = sorted({f"{h}:{p}" for h, p in addresses if addresses.count((h, p)) > 1})
    if same:
        raise ConfigError(f"two replicas share the address {same[0]}")

    n = _int(raw.get("n", min(3, len(replicas)) or 3), "n")
    majority = n // 2 + 1
    w = _int(raw.get("w", majority), "w")
    r = _int(raw.get("r", majority), "r")
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    if not replicas:
        raise ConfigError("no replicas configured (give --replica ID=HOST:PORT)")
    if len(replicas) < n:
        raise ConfigError(f"n={n} needs at least {n} replicas, {len(replicas)} configured")
    if not 1 <= w <= n:
        raise ConfigError(f"w={w} is outside 1..n (n={n})")
    if not 1 <= r <= n:
        raise ConfigError(f"r={r} is outside 1..n (n={n})")
    min_w = _int(raw.get("min_w", w), "min_w")
    if not 1 <= min_w <= w:
        raise ConfigError(f"min_w={min_w} is outside 1..w (w={w})")
    mode = str(_default(raw, "mode")).lower()
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is not one of {', '.join(MODES)}")

    listen = _default(raw, "listen")
    listen_addr = parse_address(listen, "listen address") if isinstance(listen, str) else tuple(listen)
    metrics = _default(raw, "metrics_listen")
    metrics_addr = parse_address(metrics, "metrics address") if metrics else None

    timeout = _float(_default(raw, "replica_timeout"), "replica_timeout")
    if not 0.001 <= timeout <= 60:
        raise ConfigError(f"replica_timeout={timeout} is outside 0.001..60 seconds")
    grace = _float(_default(raw, "tombstone_grace"), "tombstone_grace")
    if grace < 0:
        raise ConfigError("tombstone_grace must not be negative")
    soft = _int(_default(raw, "sibling_soft_limit"), "sibling_soft_limit")
    hard = _int(_default(raw, "sibling_hard_limit"), "sibling_hard_limit")
    if not 1 <= soft <= hard:
        raise ConfigError("sibling limits need 1 <= sibling_soft_limit <= sibling_hard_limit")
    heartbeat = _float(_default(raw, "heartbeat_interval"), "heartbeat_interval")
    if heartbeat <= 0:
        raise ConfigError("heartbeat_interval must be positive")
    hint_window = _float(_default(raw, "hint_window"), "hint_window")
    if hint_window < 0:
        raise ConfigError("hint_window must not be negative")
    workers = _int(_default(raw, "workers"), "workers")
    if not 1 <= workers <= 64:
        raise ConfigError(f"workers={workers} is outside 1..64")
    password = _default(raw, "password")
    context_secret = _default(raw, "context_secret")
    if context_secret is not None and len(str(context_secret)) < 16:
        raise ConfigError("context_secret must be at least 16 characters (every proxy of "
                          "the cluster needs the same one)")
    password = str(password) if password else None
    users = list(users or [])
    names = [u.name for u in users]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"user {name!r} is defined twice")
    protected = _yes_no(_default(raw, "protected_mode"), "protected-mode")
    host = str(listen_addr[0])
    if protected and not is_loopback(host) and default_user_open(password, users):
        raise ConfigError(
            f"protected mode: listening on {host} (not a loopback address) with no password "
            "would let anyone on the network use the data; set --password (or [[users]] and a "
            "closed default user), listen on 127.0.0.1, or start with --protected-mode no")
    maxclients = _int(_default(raw, "maxclients"), "maxclients")
    if not 1 <= maxclients <= 1_000_000:
        raise ConfigError(f"maxclients={maxclients} is outside 1..1000000")
    idle = _float(_default(raw, "timeout"), "timeout")
    if idle < 0:
        raise ConfigError("timeout must not be negative (0: never)")
    output_limit = parse_output_limit(_default(raw, "client_output_buffer_limit"))
    tls = {name: (str(raw[name]) if raw.get(name) else None)
           for name in ("tls_cert_file", "tls_key_file", "tls_ca_cert_file", "tls_protocols",
                        "tls_ciphers", "tls_ciphersuites")}
    if bool(tls["tls_cert_file"]) != bool(tls["tls_key_file"]):
        raise ConfigError("--tls-cert-file and --tls-key-file go together")
    auth_clients = str(_default(raw, "tls_auth_clients")).lower()
    if auth_clients not in TLS_AUTH_CLIENTS:
        raise ConfigError(f"tls-auth-clients {auth_clients!r} is not one of yes, no, optional")
    if tls["tls_cert_file"] and auth_clients != "no" and not tls["tls_ca_cert_file"]:
        raise ConfigError("tls-auth-clients needs --tls-ca-cert-file to verify client "
                          "certificates (or use --tls-auth-clients no)")
    ae_enabled = _bool(_default(raw, "antientropy_enabled"), "antientropy.enabled")
    ae_interval = _float(_default(raw, "antientropy_interval"), "antientropy.interval")
    if not 0.05 <= ae_interval <= 86400:
        raise ConfigError(f"antientropy.interval={ae_interval} is outside 0.05..86400 seconds")
    ae_rate = _float(_default(raw, "antientropy_keys_per_second"), "antientropy.keys_per_second")
    if not 1 <= ae_rate <= 1e7:
        raise ConfigError(f"antientropy.keys_per_second={ae_rate} is outside 1..10000000")
    ae_rebuild = _float(_default(raw, "antientropy_rebuild_interval"), "antientropy.rebuild_interval")
    if ae_rebuild < 0:
        raise ConfigError("antientropy.rebuild_interval must not be negative (0: only when missing)")
    pbs_t_ms = _times(_default(raw, "pbs_t_ms"), "pbs_t_ms")
    pbs_interval = _float(_default(raw, "pbs_interval"), "pbs_interval")
    if not 0.01 <= pbs_interval <= 86400:
        raise ConfigError(f"pbs_interval={pbs_interval} is outside 0.01..86400 seconds")

    return Config(
        replicas=tuple(replicas),
        listen=(str(listen_addr[0]), int(listen_addr[1])),
        metrics_listen=metrics_addr,
        n=n,
        w=w,
        r=r,
        mode=mode,
        replica_timeout=timeout,
        tombstone_grace=grace,
        sibling_soft_limit=soft,
        sibling_hard_limit=hard,
        min_w=min_w,
        heartbeat_interval=heartbeat,
        hint_window=hint_window,
        sloppy_quorum=_bool(_default(raw, "sloppy_quorum"), "sloppy_quorum"),
        password=password,
        context_secret=str(context_secret) if context_secret is not None else None,
        log_keys=_bool(_default(raw, "log_keys"), "log_keys"),
        workers=workers,
        users=tuple(users),
        protected_mode=protected,
        maxclients=maxclients,
        timeout=idle,
        output_limit=output_limit,
        tls_auth_clients=auth_clients,
        **tls,
        pbs_t_ms=pbs_t_ms,
        pbs_interval=pbs_interval,
        antientropy_enabled=ae_enabled,
        antientropy_interval=ae_interval,
        antientropy_keys_per_second=ae_rate,
        antientropy_rebuild_interval=ae_rebuild,
    )
