"""The ``redquorum`` command: ``up`` (embedded replicas + proxy) and ``serve``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .commands.acl import build_users
from .config import Config, ConfigError, load, parse_address
from .run import serve
from .server.listener import AddressInUse, bind_listener
from .server.tls import replica_contexts, server_context
from .workers import run_workers

log = logging.getLogger("redquorum")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="where clients connect (default 127.0.0.1:6379; env REDQUORUM_LISTEN)")
    p.add_argument("--metrics-listen", metavar="HOST:PORT", dest="metrics_listen",
                   help="serve Prometheus /metrics here (env REDQUORUM_METRICS_LISTEN)")
    p.add_argument("-n", type=int, help="replicas per key (env REDQUORUM_N)")
    p.add_argument("-w", type=int, help="write quorum: acks before a write succeeds (env REDQUORUM_W)")
    p.add_argument("-r", type=int, help="read quorum: answers before a read succeeds (env REDQUORUM_R)")
    p.add_argument("--mode", choices=["causal", "lww"],
                   help="causal (siblings, default) or lww (last write wins) (env REDQUORUM_MODE)")
    p.add_argument("--replica-timeout", type=float, dest="replica_timeout", metavar="SECONDS",
                   help="how long a replica has to answer (default 0.5; env REDQUORUM_REPLICA_TIMEOUT)")
    p.add_argument("--tombstone-grace", type=float, dest="tombstone_grace", metavar="SECONDS",
                   help="how long tombstones are kept (default 3600; env REDQUORUM_TOMBSTONE_GRACE)")
    p.add_argument("--sibling-soft-limit", type=int, dest="sibling_soft_limit", metavar="N",
                   help="warn (log, metric) above N siblings (default 25; env REDQUORUM_SIBLING_SOFT_LIMIT)")
    p.add_argument("--sibling-hard-limit", type=int, dest="sibling_hard_limit", metavar="N",
                   help="refuse writes to a key with N siblings until resolved (default 100; "
                        "env REDQUORUM_SIBLING_HARD_LIMIT)")
    p.add_argument("--heartbeat-interval", type=float, dest="heartbeat_interval", metavar="SECONDS",
                   help="freshness canary period (default 1; env REDQUORUM_HEARTBEAT_INTERVAL)")
    p.add_argument("--password", help="require clients to AUTH with this (env REDQUORUM_PASSWORD)")
    p.add_argument("--protected-mode", dest="protected_mode", choices=["yes", "no"],
                   help="refuse to start on a non-loopback address without a password "
                        "(default yes; env REDQUORUM_PROTECTED_MODE)")
    p.add_argument("--maxclients", type=int, metavar="N",
                   help="most client connections at once (default 10000; env REDQUORUM_MAXCLIENTS)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="close clients idle this long (default 0: never; env REDQUORUM_TIMEOUT)")
    p.add_argument("--client-output-buffer-limit", dest="client_output_buffer_limit",
                   metavar="'HARD SOFT SECONDS'",
                   help="close a client whose unsent replies pass HARD, or SOFT for SECONDS "
                        "(default '256mb 64mb 60'; env REDQUORUM_CLIENT_OUTPUT_BUFFER_LIMIT)")
    p.add_argument("--tls-cert-file", dest="tls_cert_file", metavar="FILE",
                   help="TLS on the client listener with this certificate (and --tls-key-file)")
    p.add_argument("--tls-key-file", dest="tls_key_file", metavar="FILE",
                   help="the private key of --tls-cert-file")
    p.add_argument("--tls-ca-cert-file", dest="tls_ca_cert_file", metavar="FILE",
                   help="CA certificates that client certificates must chain to")
    p.add_argument("--tls-auth-clients", dest="tls_auth_clients",
                   choices=["yes", "no", "optional"],
                   help="require client certificates (default yes, as Redis)")
    p.add_argument("--tls-protocols", dest="tls_protocols", metavar="'TLSv1.2 TLSv1.3'",
                   help="TLS versions accepted (default: TLSv1.2 and TLSv1.3)")
    p.add_argument("--tls-ciphers", dest="tls_ciphers", metavar="LIST",
                   help="OpenSSL cipher list for TLSv1.2 and below")
    p.add_argument("--tls-ciphersuites", dest="tls_ciphersuites", metavar="LIST",
                   help="OpenSSL TLSv1.3 cipher suites")
    p.add_argument("--log-level", default=os.environ.get("REDQUORUM_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="redquorum",
        description="A Redis-protocol proxy that makes plain Redis servers one leaderless, "
                    "quorum-replicated store.")
    p.add_argument("--version", action="version", version=f"redquorum {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{up,serve}")

    up = sub.add_parser("up", help="start local redis-server replicas and the proxy",
                        description="Start N local redis-server replicas on free loopback ports "
                                    "and the proxy in front of them. Ctrl-C stops everything.")
    up.add_argument("--replicas", type=int, default=3, metavar="N",
                    help="how many redis-server replicas to start (default 3)")
    up.add_argument("--data-dir", dest="data_dir", metavar="DIR",
                    help="where replicas keep their data (default: a temporary directory, "
                         "removed on exit)")
    _common(up)

    serve = sub.add_parser("serve", help="run the proxy over existing redis-server replicas",
                           description="Run the proxy over existing redis-server replicas.")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration (env REDQUORUM_CONFIG)")
    serve.add_argument("--replica", action="append", metavar="ID=HOST:PORT",
                       help="a replica (repeat for each; env REDQUORUM_REPLICAS=id=host:port,...)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="processes sharing the listening port (default 1; env REDQUORUM_WORKERS)")
    _common(serve)
    return p


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "up":
            return run_up(args)
        return run_serve(args)
    except ConfigError as exc:
        print(f"redquorum: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run_serve(args: argparse.Namespace) -> int:
    config = load(_flags(args))
    check_security(config)
    if config.workers > 1:
        return run_workers(config)
    return serve(config)


def check_security(config: Config) -> None:
    """Users' ACL rules and TLS certificates, read now: a mistake stops the start with
    one line, before anything listens."""
    build_users(config)
    if config.tls:
        server_context(config)
    replica_contexts(config)


def run_up(args: argparse.Namespace) -> int:
    from .config import Replica, build
    from .replicas.launcher import LaunchError, launch, stop_all

    count = args.replicas
    if count < 1:
        raise ConfigError("--replicas must be at least 1")
    flags = _flags(args)
    raw: dict[str, Any] = {}
    from .config import SETTINGS

    for name in SETTINGS:
        env = os.environ.get("REDQUORUM_" + name.upper())
        if env:
            raw[name] = env
        if flags.get(name) is not None:
            raw[name] = flags[name]
    raw.setdefault("n", min(3, count))
    if "metrics_listen" not in raw:
        raw["metrics_listen"] = "127.0.0.1:9379"
    # Validate before starting anything: the same checks as with real replicas.
    placeholder = [Replica(f"r{i}", "127.0.0.1", 1 + i) for i in range(1, count + 1)]
    config = build(raw, placeholder)
    check_security(config)
    for what, address in (("listen", config.listen), ("metrics", config.metrics_listen)):
        if address is not None:
            parse_address(f"{address[0]}:{address[1]}", what)
    try:
        lsock = bind_listener(config.listen)
        if config.metrics_listen is not None:  # fail now, not after starting replicas
            bind_listener(config.metrics_listen).close()
    except AddressInUse as exc:
        print(f"redquorum: {exc.strerror}", file=sys.stderr)
        return 1

    temp = None
    if args.data_dir:
        data_dir = Path(args.data_dir)
    else:
        temp = tempfile.TemporaryDirectory(prefix="redquorum-")
        data_dir = Path(temp.name)
    replicas = []
    try:
        try:
            replicas = launch(count, data_dir)
        except LaunchError as exc:
            print(f"redquorum: {exc}", file=sys.stderr)
            return 1
        config = build(raw, [Replica(r.id, r.host, r.port) for r in replicas])
        banner = (f"embedded replicas: {', '.join(f'{r.id}={r.address} (pid {r.pid})' for r in replicas)}"
                  f"; data in {data_dir}; Ctrl-C stops all")
        return serve(config, lsock, banner)
    finally:
        stop_all(replicas)
        if temp is not None:
            temp.cleanup()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
