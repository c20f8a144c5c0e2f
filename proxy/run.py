"""Serving one proxy process: the listener, garbage-collector tuning, the trio run and
the signals that stop it. ``redquorum serve`` and ``up`` (proxy/cli.py) and each worker
of ``--workers`` (proxy/workers.py) end here."""

from __future__ import annotations

import gc
import logging
import resource
import signal
import sys
from typing import Any

import trio

from . import __version__
from .config import Config
from .metrics import Metrics
from .server.app import Proxy
from .server.listener import AddressInUse, bind_listener

log = logging.getLogger("redquorum")


def serve(config: Config, listener: Any = None, banner: str = "") -> int:
    try:
        lsock = listener or bind_listener(config.listen, reuse_port=config.workers > 1)
    except AddressInUse as exc:
        print(f"redquorum: {exc.strerror}", file=sys.stderr)
        return 1
    tune_gc()
    raise_fd_limit(config.maxclients)
    try:
        trio.run(_serve_until_signalled, config, lsock, banner)
    except OSError as exc:
        print(f"redquorum: {exc}", file=sys.stderr)
        return 1
    return 0


def raise_fd_limit(maxclients: int) -> None:
    """Soft RLIMIT_NOFILE up to the hard limit, as Redis does at start-up, so that
    ``maxclients`` (not the shell's default of 1024) decides how many clients fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
    reserved = 64  # replica links, the listener, metrics, logs
    if soft != resource.RLIM_INFINITY and maxclients + reserved > soft:
        log.warning("maxclients is %d but the open-file limit is %d: at most about %d clients "
                    "fit (raise the limit with ulimit -n)", maxclients, soft, soft - reserved)


def tune_gc() -> None:
    """Fewer, cheaper garbage collections on the hot path.

    Every request allocates a few short-lived container objects (a read's state, a
    callback partial, decoded tuples) and nearly none of them are in cycles, so
    reference counting frees them. With CPython's default threshold (700) the
    generation-0 collector still ran every few dozen requests and showed up in
    profiles as allocation sites; the objects made at start-up (modules, the command
    table, the ring) are frozen out of collections altogether.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def _serve_until_signalled(config: Config, lsock: Any, banner: str) -> None:
    metrics = Metrics(config)
    app = Proxy(config, events=metrics)
    metrics.attach(app)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            if config.metrics_listen:
                await nursery.start(metrics.serve, config.metrics_listen)
                nursery.start_soon(metrics.pbs.run, app)
            address = await nursery.start(app.run, lsock)
            print(f"redquorum {__version__} listening on {address[0]}:{address[1]} "
                  f"({config.describe()})", flush=True)
            if config.metrics_listen:
                h, p = config.metrics_listen
                print(f"metrics on http://{h}:{p}/metrics", flush=True)
            for replica in config.replicas:
                print(f"replica {replica.id} at {replica.address}", flush=True)
            if banner:
                print(banner, flush=True)
            async for signum in signals:
                if signum == signal.SIGHUP:
                    app.reload_tls()
                    continue
                log.info("received %s, stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
