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
_REPLICA_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
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
    replicas: tuple[Replica, ...] = ()
    listen: tuple[str, int] = ("127.0.0.1", 6379)
    metrics_listen: tuple[str, int] | None = None
    n: int = 3
    w: int = 2
    r: int = 2
    min_w: int = 2  # the lowest w a connection may choose (RQ.CONSISTENCY)
    mode: str = "causal"
    replica_timeout: float = 0.5  # seconds a replica has to answer a request once sent
    tombstone_grace: float = 3600.0  # seconds tombstones and expired values are kept
    sibling_soft_limit: int = 25
    sibling_hard_limit: int = 100
    heartbeat_interval: float = 1.0
    password: str | None = field(default=None, repr=False)  # the default user's, when set
    context_secret: str | None = field(default=None, repr=False)  # signs RQ contexts; else one kept on the replicas
    log_keys: bool = False  # log lines may name keys (else only their length and a hash)
    workers: int = 1
    users: tuple[User, ...] = ()
    protected_mode: bool = True
    maxclients: int = 10000
    timeout: float = 0.0  # idle seconds before a client is closed; 0: never
    output_limit: OutputLimit = OutputLimit(256 * 1024**2, 64 * 1024**2, 60.0)
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_cert_file: str | None = None
    tls_auth_clients: str = "yes"
    tls_protocols: str | None = None
    tls_ciphers: str | None = None
    tls_ciphersuites: str | None = None

    @property
    def tls(self) -> bool:
        """TLS on the client listener: a certificate and its key were given."""
        return bool(self.tls_cert_file and self.tls_key_file)
    pbs_t_ms: tuple[float, ...] = (0.0, 1.0, 5.0, 10.0, 100.0)  # t of the exported P(consistent)
    pbs_interval: float = 10.0  # seconds between recomputations of the PBS estimate

    def describe(self) -> str:
        overlap = "w + r > n: reads see the latest acknowledged write" if self.w + self.r > self.n \
            else "w + r <= n: reads may miss acknowledged writes"
        return f"n={self.n} w={self.w} r={self.r} mode={self.mode} ({overlap})"


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


# setting name → (TOML section, key); the environment variable is REDQUORUM_<NAME>
SETTINGS = {
    "listen": ("proxy", "listen"),
    "metrics_listen": ("proxy", "metrics_listen"),
    "password": ("proxy", "password"),
    "context_secret": ("proxy", "context_secret"),
    "log_keys": ("proxy", "log_keys"),
    "workers": ("proxy", "workers"),
    "n": ("quorum", "n"),
    "w": ("quorum", "w"),
    "r": ("quorum", "r"),
    "min_w": ("quorum", "min_w"),
    "mode": ("quorum", "mode"),
    "replica_timeout": ("quorum", "replica_timeout"),
    "tombstone_grace": ("quorum", "tombstone_grace"),
    "sibling_soft_limit": ("quorum", "sibling_soft_limit"),
    "sibling_hard_limit": ("quorum", "sibling_hard_limit"),
    "heartbeat_interval": ("proxy", "heartbeat_interval"),
    "protected_mode": ("proxy", "protected_mode"),
    "maxclients": ("proxy", "maxclients"),
    "timeout": ("proxy", "timeout"),
    "client_output_buffer_limit": ("proxy", "client_output_buffer_limit"),
    "tls_cert_file": ("proxy", "tls_cert_file"),
    "tls_key_file": ("proxy", "tls_key_file"),
    "tls_ca_cert_file": ("proxy", "tls_ca_cert_file"),
    "tls_auth_clients": ("proxy", "tls_auth_clients"),
    "tls_protocols": ("proxy", "tls_protocols"),
    "tls_ciphers": ("proxy", "tls_ciphers"),
    "tls_ciphersuites": ("proxy", "tls_ciphersuites"),
    "pbs_t_ms": ("proxy", "pbs_t_ms"),
    "pbs_interval": ("proxy", "pbs_interval"),
}


def load(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Config:
    """Build and validate a Config. ``flags`` holds only the flags the user gave."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    replicas: list[Replica] | None = None
    users: list[User] = []

    path = flags.get("config") or environ.get("REDQUORUM_CONFIG") or config_file
    if path:
        doc = _read_toml(path)
        for name, (section, key) in SETTINGS.items():
            table = doc.get(section, {})
            for spelling in (key, key.replace("_", "-")):  # Redis spells tls-cert-file
                if spelling in table:
                    raw[name] = table[spelling]
        unknown = set(doc) - {"proxy", "quorum", "replicas", "users"}
        if unknown:
            raise ConfigError(f"{path}: unknown section [{sorted(unknown)[0]}]")
        if "replicas" in doc:
            replicas = [_replica_from_toml(entry, path) for entry in doc["replicas"]]
        users = [_user_from_toml(entry, path) for entry in doc.get("users", [])]

    for name in SETTINGS:
        env = environ.get("REDQUORUM_" + name.upper())
        if env is not None and env != "":
            raw[name] = env
    env_replicas = environ.get("REDQUORUM_REPLICAS")
    if env_replicas:
        replicas = [parse_replica(x) for x in env_replicas.split(",") if x.strip()]

    for name in SETTINGS:
        if flags.get(name) is not None:
            raw[name] = flags[name]
    if flags.get("replica"):
        replicas = [parse_replica(x) for x in flags["replica"]]

    return build(raw, replicas or [], users)


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
        if not _REPLICA_ID.match(ident):
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
    mode = str(raw.get("mode", "causal")).lower()
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is not one of {', '.join(MODES)}")

    listen = raw.get("listen", "127.0.0.1:6379")
    listen_addr = parse_address(listen, "listen address") if isinstance(listen, str) else tuple(listen)
    metrics = raw.get("metrics_listen")
    metrics_addr = parse_address(metrics, "metrics address") if metrics else None

    timeout = _float(raw.get("replica_timeout", 0.5), "replica_timeout")
    if not 0.001 <= timeout <= 60:
        raise ConfigError(f"replica_timeout={timeout} is outside 0.001..60 seconds")
    grace = _float(raw.get("tombstone_grace", 3600), "tombstone_grace")
    if grace < 0:
        raise ConfigError("tombstone_grace must not be negative")
    soft = _int(raw.get("sibling_soft_limit", 25), "sibling_soft_limit")
    hard = _int(raw.get("sibling_hard_limit", 100), "sibling_hard_limit")
    if not 1 <= soft <= hard:
        raise ConfigError("sibling limits need 1 <= sibling_soft_limit <= sibling_hard_limit")
    heartbeat = _float(raw.get("heartbeat_interval", 1.0), "heartbeat_interval")
    if heartbeat <= 0:
        raise ConfigError("heartbeat_interval must be positive")
    workers = _int(raw.get("workers", 1), "workers")
    if not 1 <= workers <= 64:
        raise ConfigError(f"workers={workers} is outside 1..64")
    password = raw.get("password")
    context_secret = raw.get("context_secret")
    if context_secret is not None and len(str(context_secret)) < 16:
        raise ConfigError("context_secret must be at least 16 characters (every proxy of "
                          "the cluster needs the same one)")
    password = str(password) if password else None
    users = list(users or [])
    names = [u.name for u in users]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"user {name!r} is defined twice")
    protected = _yes_no(raw.get("protected_mode", True), "protected-mode")
    host = str(listen_addr[0])
    if protected and not is_loopback(host) and default_user_open(password, users):
        raise ConfigError(
            f"protected mode: listening on {host} (not a loopback address) with no password "
            "would let anyone on the network use the data; set --password (or [[users]] and a "
            "closed default user), listen on 127.0.0.1, or start with --protected-mode no")
    maxclients = _int(raw.get("maxclients", 10000), "maxclients")
    if not 1 <= maxclients <= 1_000_000:
        raise ConfigError(f"maxclients={maxclients} is outside 1..1000000")
    idle = _float(raw.get("timeout", 0), "timeout")
    if idle < 0:
        raise ConfigError("timeout must not be negative (0: never)")
    output_limit = parse_output_limit(raw.get("client_output_buffer_limit", "256mb 64mb 60"))
    tls = {name: (str(raw[name]) if raw.get(name) else None)
           for name in ("tls_cert_file", "tls_key_file", "tls_ca_cert_file", "tls_protocols",
                        "tls_ciphers", "tls_ciphersuites")}
    if bool(tls["tls_cert_file"]) != bool(tls["tls_key_file"]):
        raise ConfigError("--tls-cert-file and --tls-key-file go together")
    auth_clients = str(raw.get("tls_auth_clients", "yes")).lower()
    if auth_clients not in TLS_AUTH_CLIENTS:
        raise ConfigError(f"tls-auth-clients {auth_clients!r} is not one of yes, no, optional")
    if tls["tls_cert_file"] and auth_clients != "no" and not tls["tls_ca_cert_file"]:
        raise ConfigError("tls-auth-clients needs --tls-ca-cert-file to verify client "
                          "certificates (or use --tls-auth-clients no)")
    pbs_t_ms = _times(raw.get("pbs_t_ms", Config.pbs_t_ms), "pbs_t_ms")
    pbs_interval = _float(raw.get("pbs_interval", 10.0), "pbs_interval")
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
        password=password,
        context_secret=str(context_secret) if context_secret is not None else None,
        log_keys=_bool(raw.get("log_keys", False), "log_keys"),
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
    )
