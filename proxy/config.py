"""Configuration: defaults < TOML file < REDQUORUM_* environment < command-line flags.

Everything is validated at startup into one frozen ``Config``; a bad value stops the
program with one line naming the problem (``ConfigError``), before anything listens.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MODES = ("causal", "lww")
_REPLICA_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Replica:
    id: str
    host: str
    port: int
    password: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    replicas: tuple[Replica, ...] = ()
    listen: tuple[str, int] = ("127.0.0.1", 6379)
    metrics_listen: tuple[str, int] | None = None
    n: int = 3
    w: int = 2
    r: int = 2
    mode: str = "causal"
    replica_timeout: float = 0.5  # seconds a replica has to answer a request once sent
    tombstone_grace: float = 3600.0  # seconds tombstones and expired values are kept
    sibling_soft_limit: int = 25
    sibling_hard_limit: int = 100
    heartbeat_interval: float = 1.0
    password: str | None = None  # clients must AUTH with this when set
    workers: int = 1
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
    "workers": ("proxy", "workers"),
    "n": ("quorum", "n"),
    "w": ("quorum", "w"),
    "r": ("quorum", "r"),
    "mode": ("quorum", "mode"),
    "replica_timeout": ("quorum", "replica_timeout"),
    "tombstone_grace": ("quorum", "tombstone_grace"),
    "sibling_soft_limit": ("quorum", "sibling_soft_limit"),
    "sibling_hard_limit": ("quorum", "sibling_hard_limit"),
    "heartbeat_interval": ("proxy", "heartbeat_interval"),
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

    path = flags.get("config") or environ.get("REDQUORUM_CONFIG") or config_file
    if path:
        doc = _read_toml(path)
        for name, (section, key) in SETTINGS.items():
            if key in doc.get(section, {}):
                raw[name] = doc[section][key]
        unknown = set(doc) - {"proxy", "quorum", "replicas"}
        if unknown:
            raise ConfigError(f"{path}: unknown section [{sorted(unknown)[0]}]")
        if "replicas" in doc:
            replicas = [_replica_from_toml(entry, path) for entry in doc["replicas"]]

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

    return build(raw, replicas or [])


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
    password = entry.get("password")
    return Replica(str(entry["id"]), host, port, None if password is None else str(password))


def _times(value: Any, name: str) -> tuple[float, ...]:
    """A list of milliseconds: a TOML array, or comma-separated from the environment or a flag."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{name} must be a list of milliseconds, got {value!r}")
    times = tuple(_float(item, name) for item in items if not isinstance(item, str) or item.strip())
    if not times or len(times) > 32 or any(not 0 <= t < 1e9 for t in times):
        raise ConfigError(f"{name} must list 1 to 32 times in 0..1e9 ms, got {value!r}")
    return tuple(sorted(set(times)))


def build(raw: Mapping[str, Any], replicas: list[Replica]) -> Config:
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
        heartbeat_interval=heartbeat,
        password=str(password) if password else None,
        workers=workers,
        pbs_t_ms=pbs_t_ms,
        pbs_interval=pbs_interval,
    )
