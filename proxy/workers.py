"""``--workers N``: several full proxy processes sharing one listening port.

Each worker binds the port with SO_REUSEPORT (the kernel spreads new connections over
them) and is a complete, independent proxy: its own replica links, canary and metrics
endpoint (worker i serves metrics on the configured port + i). Workers share nothing
but the replicas, exactly like several proxies on several machines, which the design
already allows. The parent only forwards SIGINT/SIGTERM (and SIGHUP, which reloads certificates) and waits; if one worker dies,
the others are stopped too, so a supervisor sees the failure.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import replace

from .config import Config


def run_workers(config: Config) -> int:
    from .run import serve
    from .server.listener import AddressInUse, bind_listener

    # Bind every worker's socket before forking, so a port in use fails the start.
    try:
        listeners = [bind_listener(config.listen, reuse_port=True) for _ in range(config.workers)]
    except AddressInUse as exc:
        print(f"redquorum: {exc.strerror}", file=sys.stderr)
        return 1
    children: list[int] = []
    for index, listener in enumerate(listeners):
        metrics = config.metrics_listen
        if metrics is not None:
            metrics = (metrics[0], metrics[1] + index)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the worker
            for other in listeners:
                if other is not listener:
                    other.close()
            code = 1
            try:
                code = serve(replace(config, metrics_listen=metrics), listener,
                             banner=f"worker {index} (pid {os.getpid()})")
            finally:
                os._exit(code)
        children.append(pid)
    for listener in listeners:
        listener.close()
    return _supervise(children)


def _supervise(children: list[int]) -> int:
    stopping = False

    def stop(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reload(signum: int = signal.SIGHUP, frame: object = None) -> None:
        for pid in children:  # each worker reads its TLS certificates again
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
    status = 0
    remaining = set(children)
    while remaining:
        try:
            pid, code = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid in remaining:
            remaining.discard(pid)
            exit_code = os.waitstatus_to_exitcode(code)
            if exit_code != 0 and not stopping:
                print(f"redquorum: worker pid {pid} exited with {exit_code}; stopping the others",
                      file=sys.stderr)
                status = 1
                stop()
                time.sleep(0.1)
    return status
