"""The ``redquorum`` command: ``up`` (embedded replicas + proxy) and ``serve``."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import NATIVE_STATUS, __version__
from .commands.acl import build_users
from .config import (
    MODES,
    REPLICA_ID,
    SETTINGS,
    TLS_AUTH_CLIENTS,
    Config,
    ConfigError,
    Replica,
    help_text,
    load,
    parse_address,
    parse_replica,
)
from .logs import configure as configure_logging
from .run import serve
from .server.listener import AddressInUse, bind_listener
from .server.tls import replica_contexts, server_context
from .workers import run_workers

log = logging.getLogger("redquorum")

UP_METRICS_LISTEN = "127.0.0.1:9379"  # up serves metrics unless told otherwise
UP_SHOWN = {"n": "min(3, --replicas)", "metrics_listen": UP_METRICS_LISTEN}


def _setting(p: argparse.ArgumentParser, name: str, *flags: str,
             shown: Mapping[str, str] | None = None, **kwargs: Any) -> None:
    """A flag for a setting of config.SETTINGS, its help (default, environment variable)
    written from there; ``shown`` states a command's own defaults."""
    flags = flags or ("--" + name.replace("_", "-"),)
    p.add_argument(*flags, dest=name, help=help_text(name, (shown or {}).get(name)), **kwargs)


def _antientropy(p: argparse.ArgumentParser, shown: Mapping[str, str] | None = None) -> None:
    _setting(p, "antientropy_enabled", metavar="yes|no", shown=shown)
    _setting(p, "antientropy_interval", type=float, metavar="SECONDS", shown=shown)
    _setting(p, "antientropy_keys_per_second", type=float, metavar="N", shown=shown)
    _setting(p, "antientropy_rebuild_interval", type=float, metavar="SECONDS", shown=shown)


def _common(p: argparse.ArgumentParser, shown: Mapping[str, str] | None = None) -> None:
    def setting(name: str, *flags: str, **kwargs: Any) -> None:
        _setting(p, name, *flags, shown=shown, **kwargs)

    setting("listen", metavar="HOST:PORT")
    setting("metrics_listen", metavar="HOST:PORT")
    setting("n", "-n", type=int)
    setting("w", "-w", type=int)
    setting("r", "-r", type=int)
    setting("min_w", metavar="W", type=int)
    setting("mode", choices=MODES)
    setting("replica_timeout", type=float, metavar="SECONDS")
    setting("tombstone_grace", type=float, metavar="SECONDS")
    setting("sibling_soft_limit", type=int, metavar="N")
    setting("sibling_hard_limit", type=int, metavar="N")
    setting("heartbeat_interval", type=float, metavar="SECONDS")
    setting("hint_window", type=float, metavar="SECONDS")
    setting("sloppy_quorum", metavar="yes|no")
    setting("pbs_t_ms", metavar="T1,T2,...")
    setting("pbs_interval", type=float, metavar="SECONDS")
    setting("password")
    setting("protected_mode", choices=["yes", "no"])
    setting("maxclients", type=int, metavar="N")
    setting("timeout", type=float, metavar="SECONDS")
    setting("client_output_buffer_limit", metavar="'HARD SOFT SECONDS'")
    setting("tls_cert_file", metavar="FILE")
    setting("tls_key_file", metavar="FILE")
    setting("tls_ca_cert_file", metavar="FILE")
    setting("tls_auth_clients", choices=list(TLS_AUTH_CLIENTS))
    setting("tls_protocols", metavar="'TLSv1.2 TLSv1.3'")
    setting("tls_ciphers", metavar="LIST")
    setting("tls_ciphersuites", metavar="LIST")
    _antientropy(p, shown)
    p.add_argument("--log-level", default=os.environ.get("REDQUORUM_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", dest="log_format", choices=["text", "json"],
                   default=os.environ.get("REDQUORUM_LOG_FORMAT", "text"),
                   help="text lines, or one JSON object per line with ts, level, logger, msg and "
                        "the event's fields (env REDQUORUM_LOG_FORMAT)")
    setting("log_keys", action="store_const", const=True)


def _cluster(p: argparse.ArgumentParser, more: str = "") -> None:
    """The options that name a cluster's replicas, as ``serve`` takes them."""
    p.add_argument("--config", metavar="FILE", help="TOML configuration (env REDQUORUM_CONFIG)")
    p.add_argument("--replica", action="append", metavar="ID=HOST:PORT",
                   help="a replica (repeat for each; env REDQUORUM_REPLICAS=id=host:port,...)" + more)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="redquorum",
        description="A Redis-protocol proxy that makes plain Redis servers one leaderless, "
                    "quorum-replicated store.")
    p.add_argument("--version", action="version", version=f"redquorum {__version__} ({NATIVE_STATUS})")
    sub = p.add_subparsers(dest="command", required=True, metavar="{up,serve,status,repair,ring,join,leave,pbs}")

    up = sub.add_parser("up", help="start local redis-server replicas and the proxy",
                        description="Start N local redis-server replicas on free loopback ports "
                                    "and the proxy in front of them. Ctrl-C stops everything.")
    up.add_argument("--replicas", type=int, default=3, metavar="N",
                    help="how many redis-server replicas to start (default 3)")
    up.add_argument("--data-dir", dest="data_dir", metavar="DIR",
                    help="where replicas keep their data (default: a temporary directory, "
                         "removed on exit)")
    up.add_argument("--config", metavar="FILE",
                    help="TOML configuration, its [[replicas]] replaced by the embedded ones "
                         "(env REDQUORUM_CONFIG)")
    _common(up, UP_SHOWN)

    serve = sub.add_parser("serve", help="run the proxy over existing redis-server replicas",
                           description="Run the proxy over existing redis-server replicas.")
    _cluster(serve)
    _setting(serve, "workers", type=int, metavar="N")
    _common(serve)

    status = sub.add_parser(
        "status", help="show every replica, the quorum settings and whether quorums can form",
        description="Read every replica (and, with --metrics-url, the proxies' metrics) and "
                    "print one table. Exit status 0 when every key can form its read and write "
                    "quorums, 1 when some cannot, 2 on a configuration error.")
    _cluster(status)
    for name in "nwr":
        _setting(status, name, "-" + name, type=int)
    _setting(status, "sloppy_quorum", metavar="yes|no")
    status.add_argument("--metrics-url", action="append", dest="metrics_url", metavar="URL",
                        help="a proxy's metrics endpoint, e.g. http://127.0.0.1:9379/metrics "
                             "(repeat for each proxy): adds canary lag and hint ages")
    status.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                        help="how long each replica and endpoint has to answer (default 2)")
    status.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    status.add_argument("--log-level", default=os.environ.get("REDQUORUM_LOG_LEVEL", "warning"),
                        choices=["debug", "info", "warning", "error"])

    repair = sub.add_parser(
        "repair", help="run one anti-entropy round against the replicas and print what it repaired",
        description="Compare the replicas' digests, partition by partition, and merge what "
                    "differs into the replicas that lack it (the same exchange a proxy runs in "
                    "the background). A progress bar goes to stderr.")
    _cluster(repair, "; a bare ID means --replica-id ID")
    _setting(repair, "n", "-n", type=int)
    _setting(repair, "mode", choices=MODES)
    repair.add_argument("--partition", type=int, action="append", metavar="P",
                        help="only this ring partition (0-4095; repeatable)")
    repair.add_argument("--replica-id", dest="replica_id", metavar="ID",
                        help="only compare and repair this replica")
    repair.add_argument("--dry-run", action="store_true", dest="dry_run",
                        help="only report the divergence; write nothing")
    repair.add_argument("--rebuild", action="store_true",
                        help="first rebuild every replica's digests from its data (after changes "
                             "made directly on a replica: DEL, FLUSHALL, restored files)")
    repair.add_argument("--json", action="store_true", help="print the result as JSON")
    _setting(repair, "antientropy_keys_per_second", type=float, metavar="N")
    repair.add_argument("--log-level", default=os.environ.get("REDQUORUM_LOG_LEVEL", "warning"),
                        choices=["debug", "info", "warning", "error"])
    _membership_parsers(sub)
    _pbs_parser(sub)
    return p


def _membership_parsers(sub: Any) -> None:
    ring = sub.add_parser(
        "ring", help="show each node's share of the partitions, the balance and any change running",
        description="Read the cluster's membership record from the replicas and print, per "
                    "node, the share of the ring's partitions it is a home of (and the first "
                    "home of), its state, the fair share and the largest share over it, and "
                    "the progress of a membership change when one runs.")
    _cluster(ring)
    _setting(ring, "n", "-n", type=int)
    ring.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                      help="how long each replica has to answer (default 2)")
    ring.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    ring.add_argument("--log-level", default=os.environ.get("REDQUORUM_LOG_LEVEL", "warning"),
                      choices=["debug", "info", "warning", "error"])
    for verb, target, text in (
            ("join", "ID=HOST:PORT", "add a replica to the cluster, copying it the partitions "
                                     "it gains"),
            ("leave", "ID", "remove a replica from the cluster, handing its partitions to the "
                            "nodes that gain them")):
        change = sub.add_parser(
            verb, help=text,
            description=f"{text[0].upper()}{text[1:]}, while proxies serve: the change goes "
                        "through phases written into the cluster's membership record (writes "
                        "to old and new homes, copy, reads from the new homes, old copies "
                        "dropped), each started once every live proxy applied the one before. "
                        "Run it again after an interruption to resume.")
        change.add_argument("target", metavar=target)
        _cluster(change)
        _setting(change, "n", "-n", type=int)
        _setting(change, "mode", choices=MODES)
        change.add_argument("--rate", type=float, default=5000.0, metavar="KEYS",
                            help="keys copied (and dropped) per second, at most (default 5000)")
        change.add_argument("--json", action="store_true",
                            help="progress as one JSON object per line on stdout")
        change.add_argument("--log-level",
                            default=os.environ.get("REDQUORUM_LOG_LEVEL", "warning"),
                            choices=["debug", "info", "warning", "error"])


def _pbs_parser(sub: Any) -> None:
    pbs = sub.add_parser(
        "pbs", allow_abbrev=False,
        help="probabilistically bounded staleness: how soon reads see a committed write",
        description="The WARS model of Probabilistically Bounded Staleness (Bailis et al., 2012): "
                    "the probability that a read t ms after a write commits sees it, and the t by "
                    "which reads see it with a given probability. Offline from latency "
                    "distributions (SPEC: exp:RATE_PER_MS, pareto:XM_MS:ALPHA, const:MS, "
                    "empirical:FILE with one latency in ms per line, or a mixture "
                    "P1*SPEC1+P2*SPEC2), or --live from a running proxy's sampled round trips.")
    pbs.add_argument("-n", type=int, help="replicas per key (default 3; --live: the proxy's)")
    pbs.add_argument("-r", type=int, help="read quorum (default majority; --live: the proxy's)")
    pbs.add_argument("-w", type=int, help="write quorum (default majority; --live: the proxy's)")
    for leg, what in (("W", "write request to a replica"), ("A", "write ack back"),
                      ("R", "read request to a replica"), ("S", "read response back")):
        pbs.add_argument(f"--{leg}", dest=leg, metavar="SPEC", help=f"latency of the {what} (ms)")
    t_ms = SETTINGS["pbs_t_ms"].shown_default()
    pbs.add_argument("--t", dest="t_ms", default=t_ms, metavar="T1,T2,...",
                     help=f"ms after commit to report P(consistent) at (default {t_ms})")
    pbs.add_argument("--quantiles", default="0.99,0.999", metavar="Q1,Q2,...",
                     help="probabilities to report the t-visibility for (default 0.99,0.999)")
    pbs.add_argument("--trials", type=int, default=100_000, help="Monte Carlo trials (default 100000)")
    pbs.add_argument("--seed", type=int, help="random seed, for repeatable figures")
    pbs.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    pbs.add_argument("--live", action="store_true",
                     help="use the round trips a running proxy measured (needs --metrics-url)")
    pbs.add_argument("--metrics-url", dest="metrics_url", metavar="URL",
                     help="the proxy's /metrics, e.g. http://127.0.0.1:9379/metrics")


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "pbs":
        return run_pbs(args)
    configure_logging(args.log_level, getattr(args, "log_format", "text"))
    try:
        if args.command == "up":
            return run_up(args)
        if args.command == "status":
            return run_status(args)
        if args.command == "repair":
            return run_repair(args)
        if args.command == "ring":
            return run_ring(args)
        if args.command in ("join", "leave"):
            return run_change(args)
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


def run_repair(args: argparse.Namespace) -> int:
    import json

    import trio

    from .replication.ring import PARTITIONS
    from .server.repair import run_round

    flags = {k: v for k, v in _flags(args).items()
             if k not in ("partition", "replica_id", "dry_run", "json", "rebuild")}
    # `--replica ID` (no address) names the replica to repair, as `--replica-id ID` does
    named = [r for r in args.replica or [] if "=" not in r]
    if named:
        if len(named) > 1 or (args.replica_id is not None and args.replica_id != named[0]):
            raise ConfigError("repair one replica at a time (--replica-id ID)")
        args.replica_id = named[0].strip()
        flags["replica"] = [r for r in args.replica if "=" in r] or None
    config = load(flags)
    for p in args.partition or []:
        if not 0 <= p < PARTITIONS:
            raise ConfigError(f"--partition {p} is outside 0..{PARTITIONS - 1}")
    ids = [r.id for r in config.replicas]
    if args.replica_id is not None and args.replica_id not in ids:
        raise ConfigError(f"--replica-id {args.replica_id!r} is not one of {', '.join(ids)}")
    bar = _ProgressBar(sys.stderr)
    stats = trio.run(lambda: run_round(config, dry_run=args.dry_run, partitions=args.partition,
                                       only=args.replica_id, rebuild=args.rebuild,
                                       progress=bar.show))
    bar.close(stats)
    report = {
        "dry_run": args.dry_run,
        "replicas_compared": stats.replicas,
        "partitions_compared": stats.partitions,
        "partitions_diverged": stats.partitions_diverged,
        "partitions_leased_elsewhere": stats.partitions_leased,
        "segments_diverged": stats.segments_diverged,
        "segments_diverged_by_replica": stats.segments_by_replica,
        "keys_compared": stats.keys_compared,
        "keys_diverged": stats.keys_diverged,
        "keys_repaired": stats.keys_repaired,
        "keys_repaired_by_replica": stats.repaired,
        "errors": stats.errors,
        "seconds": round(stats.duration, 3),
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(f"replicas compared: {', '.join(stats.replicas) or 'none'}")
        print(f"partitions: {stats.partitions} compared, {stats.partitions_diverged} diverged"
              + (f", {stats.partitions_leased} being repaired by a proxy" if stats.partitions_leased else ""))
        print(f"segments diverged: {stats.segments_diverged}")
        print(f"keys: {stats.keys_compared} compared, {stats.keys_diverged} diverged, "
              f"{stats.keys_repaired} repaired" + (" (dry run: nothing written)" if args.dry_run else ""))
        for replica in ids:
            if stats.repaired.get(replica) or stats.segments_by_replica.get(replica):
                print(f"  {replica}: {stats.segments_by_replica.get(replica, 0)} segments diverged, "
                      f"{stats.repaired.get(replica, 0)} keys repaired")
        if stats.errors:
            print(f"errors: {stats.errors} (see the log)")
    if len(stats.replicas) < 2:
        print("redquorum: fewer than two replicas with digests answered: nothing compared",
              file=sys.stderr)
        return 1
    return 0 if stats.errors == 0 else 1


class _StderrBar:
    """Progress on stderr: one line redrawn in place on a terminal (at most every 0.1 s),
    a line per second otherwise."""

    def __init__(self, stream: Any) -> None:
        import time

        self.stream = stream
        self.tty = stream.isatty()
        self.clock = time.monotonic
        self.last = 0.0
        self.open = False  # a line drawn in place and not ended yet

    def _due(self, force: bool = False) -> bool:
        now = self.clock()
        if not force and now - self.last < (0.1 if self.tty else 1.0):
            return False
        self.last = now
        return True

    def _draw(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self.open = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class _ProgressBar(_StderrBar):
    """A repair round's counts."""

    def _line(self, stats: Any) -> str:
        return (f"keys compared {stats.keys_compared}  segments differing {stats.segments_diverged}"
                f"  keys repaired {stats.keys_repaired}  partitions differing {stats.partitions_diverged}")

    def show(self, stats: Any) -> None:
        if self._due():
            self._draw("[repair] " + self._line(stats))

    def close(self, stats: Any) -> None:
        end = "\r" if self.tty else ""
        self.stream.write(f"{end}[repair] {self._line(stats)}  done in {stats.duration:.1f}s\n")
        self.stream.flush()


def run_status(args: argparse.Namespace) -> int:
    from .status import collect, render_json, render_table

    flags = _flags(args)
    for name in ("metrics_url", "timeout", "json", "log_level"):
        flags.pop(name, None)
    config = load(flags)
    urls = [_metrics_url(url) for url in args.metrics_url or []]
    status = collect(config, urls, timeout=args.timeout)
    print(render_json(status) if args.json else render_table(status))
    return 0 if status.quorum_possible else 1


def run_ring(args: argparse.Namespace) -> int:
    from .status import collect_ring, render_ring, render_ring_json

    flags = {k: v for k, v in _flags(args).items() if k not in ("timeout", "json", "log_level")}
    ring = collect_ring(load(flags), timeout=args.timeout)
    print(render_ring_json(ring) if args.json else render_ring(ring))
    return 0 if ring.reachable else 1


def run_change(args: argparse.Namespace) -> int:
    import json

    import trio

    from .replication.membership import Node
    from .server.change import ChangeFailed, Progress
    from .server.change import run_change as drive

    flags = {k: v for k, v in _flags(args).items()
             if k not in ("target", "rate", "json", "log_level")}
    config = load(flags)
    join = leave = None
    if args.command == "join":
        replica = parse_replica(args.target)
        if not REPLICA_ID.match(replica.id):
            raise ConfigError(f"replica id {replica.id!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        join = Node(replica.id, replica.address)
    else:
        leave = args.target.strip()
    if not args.rate > 0:
        raise ConfigError("--rate must be above 0")
    bar = _ChangeBar(sys.stderr)

    def report(progress: Progress) -> None:
        if args.json:
            print(json.dumps(progress.as_dict(), sort_keys=True), flush=True)
        else:
            bar.show(progress)

    try:
        record = trio.run(lambda: drive(config, join=join, leave=leave, rate=args.rate,
                                        report=report))
    except ChangeFailed as exc:
        bar.end()
        print(f"redquorum {args.command}: {exc}", file=sys.stderr)
        return 1
    bar.end()
    if not args.json:
        print(f"membership {record.describe()}: {', '.join(record.new)}")
    return 0


class _ChangeBar(_StderrBar):
    """A membership change's progress: a line per phase, a bar per step."""

    def show(self, progress: Any) -> None:
        if progress.step in ("phase", "done") or (progress.step == "waiting" and
                                                  progress.message.startswith("ignoring")):
            self.end()
            self.stream.write(f"[{progress.step}] {progress.message}\n")
            self.stream.flush()
            return
        finished = progress.step != "waiting" and progress.done == progress.total
        if not self._due(force=finished):
            return
        if progress.step == "waiting":
            line = progress.message
        else:
            width = 30
            filled = width * progress.done // progress.total if progress.total else width
            unit = "nodes" if progress.step == "cleanup" else "partitions"
            line = (f"{progress.step} [{'#' * filled}{'.' * (width - filled)}] "
                    f"{progress.done}/{progress.total} {unit}, {progress.keys} keys")
        self._draw(line)

    def end(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def _metrics_url(text: str) -> str:
    """HOST:PORT or a URL; a bare address means its /metrics."""
    if "://" not in text:
        host, port = parse_address(text, "metrics URL")
        return f"http://{host}:{port}/metrics"
    return text


def check_security(config: Config) -> None:
    """Users' ACL rules and TLS certificates, read now: a mistake stops the start with
    one line, before anything listens."""
    build_users(config)
    if config.tls:
        server_context(config)
    replica_contexts(config)


def up_config(flags: Mapping[str, Any], environ: Mapping[str, str],
              replicas: list[Replica]) -> Config:
    """``up``'s configuration: the loading and precedence of ``serve`` (defaults < TOML
    file < environment < flags), the embedded replicas in place of any configured, and
    ``up``'s own defaults just above the table's."""
    defaults = {"n": min(3, len(replicas)), "metrics_listen": UP_METRICS_LISTEN}
    return load(flags, environ, defaults=defaults, replicas=replicas)


def run_up(args: argparse.Namespace) -> int:
    from .replicas.launcher import LaunchError, launch, stop_all

    count = args.replicas
    if count < 1:
        raise ConfigError("--replicas must be at least 1")
    flags = _flags(args)
    # Validate before starting anything: the same checks as with real replicas.
    placeholder = [Replica(f"r{i}", "127.0.0.1", 1 + i) for i in range(1, count + 1)]
    config = up_config(flags, os.environ, placeholder)
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
        config = up_config(flags, os.environ, [Replica(r.id, r.host, r.port) for r in replicas])
        banner = (f"embedded replicas: {', '.join(f'{r.id}={r.address} (pid {r.pid})' for r in replicas)}"
                  f"; data in {data_dir}; Ctrl-C stops all")
        return serve(config, lsock, banner)
    finally:
        stop_all(replicas)
        if temp is not None:
            temp.cleanup()


# -- redquorum pbs --------------------------------------------------------------------------------

LIVE_POINTS = 2000  # quasi-samples rebuilt per exported round-trip distribution


def run_pbs(args: argparse.Namespace) -> int:
    import json

    from .replication.pbs import SpecError

    try:
        t_ms = _number_list(args.t_ms, "--t", low=0.0, high=math.inf)
        quantiles = _number_list(args.quantiles, "--quantiles", low=0.0, high=1.0)
        report = _pbs_live(args, t_ms, quantiles) if args.live else _pbs_offline(args, t_ms, quantiles)
    except SpecError as exc:
        print(f"redquorum pbs: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"redquorum pbs: cannot read {args.metrics_url}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print(_pbs_table(report, args))
    return 0


def _number_list(text: str, flag: str, *, low: float, high: float) -> list[float]:
    from .replication.pbs import SpecError

    try:
        values = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise SpecError(f"{flag} takes comma-separated numbers, got {text!r}") from None
    if not values or any(not low <= v <= high or math.isnan(v) for v in values):
        raise SpecError(f"{flag} takes numbers in {low:g}..{high:g}, got {text!r}")
    return values


def _quorum(args: argparse.Namespace, n: int | None = None, r: int | None = None,
            w: int | None = None) -> tuple[int, int, int]:
    n = args.n if args.n is not None else n if n is not None else 3
    majority = n // 2 + 1
    r = args.r if args.r is not None else r if r is not None else majority
    w = args.w if args.w is not None else w if w is not None else majority
    return n, r, w


def _pbs_figures(thresholds: Any, t_ms: list[float], quantiles: list[float],
                 n: int, r: int, w: int, trials: int) -> dict[str, Any]:
    from .replication import pbs

    visible = pbs.t_visibility(thresholds, quantiles)
    return {"t_ms": t_ms, "p_consistent": pbs.p_consistent(thresholds, t_ms),
            "quantiles_ms": {f"{q:g}": v for q, v in zip(quantiles, visible, strict=True)},
            "n": n, "r": r, "w": w, "trials": trials}


def _pbs_offline(args: argparse.Namespace, t_ms: list[float], quantiles: list[float]) -> dict[str, Any]:
    import numpy as np

    from .replication import pbs

    missing = [f"--{leg}" for leg in "WARS" if getattr(args, leg) is None]
    if missing:
        raise pbs.SpecError(f"give {', '.join(missing)} (latency SPECs), or --live --metrics-url URL")
    if args.metrics_url:
        raise pbs.SpecError("--metrics-url goes with --live")
    legs = [pbs.parse_spec(getattr(args, leg)) for leg in "WARS"]
    n, r, w = _quorum(args)
    thresholds = pbs.simulate(n, r, w, *legs, args.trials, np.random.default_rng(args.seed))
    return _pbs_figures(thresholds, t_ms, quantiles, n, r, w, args.trials)


def _pbs_live(args: argparse.Namespace, t_ms: list[float], quantiles: list[float]) -> dict[str, Any]:
    """Rebuild each replica's read and write round-trip distributions from the quantiles the
    proxy exports (redquorum_pbs_round_trip_seconds) and run the model on them; the
    proxy's own estimate (its two PBS gauges) is reported alongside."""
    import urllib.request

    import numpy as np
    from prometheus_client.parser import text_string_to_metric_families

    from .replication import pbs

    if not args.metrics_url:
        raise pbs.SpecError("--live needs --metrics-url URL (the proxy's /metrics)")
    if any(getattr(args, leg) is not None for leg in "WARS"):
        raise pbs.SpecError("--live measures W, A, R and S: give no SPECs with it")
    with urllib.request.urlopen(args.metrics_url, timeout=10) as response:
        text = response.read().decode()
    points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    build: dict[str, str] = {}
    proxy_p: dict[str, float] = {}
    proxy_visibility: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "redquorum_pbs_round_trip_seconds":
                points.setdefault((labels["replica"], labels["op"]), []).append(
                    (float(labels["quantile"]), sample.value * 1000))
            elif sample.name == "redquorum_build_info":
                build = labels
            elif sample.name == "redquorum_pbs_consistency_probability":
                proxy_p[labels["t_ms"]] = sample.value
            elif sample.name == "redquorum_pbs_t_visibility_seconds":
                proxy_visibility[labels["quantile"]] = sample.value * 1000
    if not build:
        raise pbs.SpecError(f"{args.metrics_url} is not a redquorum proxy's /metrics")
    n, r, w = _quorum(args, int(build["n"]), int(build["r"]), int(build["w"]))
    replicas = sorted({replica for replica, _ in points})
    if not replicas:
        raise pbs.SpecError("the proxy has no round-trip samples yet: it needs reads and writes, "
                            "then pbs_interval to pass")
    grid = (np.arange(LIVE_POINTS) + 0.5) / LIVE_POINTS

    def rebuilt(replica: str, op: str) -> Any:
        pairs = sorted(points.get((replica, op), []))
        if not pairs:
            return np.empty(0)
        return np.interp(grid, [q for q, _ in pairs], [v for _, v in pairs])

    thresholds = pbs.simulate_round_trips(
        n, r, w, [rebuilt(x, "write") for x in replicas], [rebuilt(x, "read") for x in replicas],
        args.trials, np.random.default_rng(args.seed))
    report = _pbs_figures(thresholds, t_ms, quantiles, n, r, w, args.trials)
    report["proxy_estimate"] = {"p_consistent": proxy_p, "quantiles_ms": proxy_visibility}
    return report


def _pbs_table(report: dict[str, Any], args: argparse.Namespace) -> str:
    source = f"live round trips from {args.metrics_url}" if args.live else \
        f"W={args.W} A={args.A} R={args.R} S={args.S}"
    lines = [f"PBS, WARS model: n={report['n']} r={report['r']} w={report['w']}, "
             f"{report['trials']} trials, {source}",
             f"{'t (ms)':>12}  P(consistent)"]
    for t, p in zip(report["t_ms"], report["p_consistent"], strict=True):
        lines.append(f"{t:>12g}  {p:.6f}")
    lines.append(f"{'quantile':>12}  t-visibility (ms)")
    for q, ms in report["quantiles_ms"].items():
        lines.append(f"{q:>12}  {ms:.4g}")
    proxy = report.get("proxy_estimate")
    if proxy:
        lines.append("the proxy's own estimate (its configured t and quantiles):")
        for t, p in proxy["p_consistent"].items():
            lines.append(f"{'t=' + t + ' ms':>12}  P={p:.6f}")
        for q, ms in proxy["quantiles_ms"].items():
            lines.append(f"{'q=' + q:>12}  {ms:.4g} ms")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
