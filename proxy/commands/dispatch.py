"""Running one command of a client batch, and counting a finished batch's commands.

Every command goes through ``dispatch``: table lookup, AUTH, arity, ACL, reserved keys,
then the handler, which answers at once or defers its reply to a replica callback, unless
it has to wait for the replies before it (``dispatch`` returns False). ``BatchCounter``
counts each command of a finished batch by outcome, with the batch's latency. Both run
for every request, so they live apart from the server object (proxy/server/app.py), in a
module scripts/build_native.py compiles.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from ..protocol.resp import ReplyError
from ..replication.counters import LATENCY_BUCKETS, CommandStats, InfoStats, fine_bucket
from .commanddata import SUBCOMMANDS
from .connection import subcommand_error
from .table import (
    DEFERRED,
    TABLE,
    UNSUPPORTED,
    Batch,
    Rejected,
    arity_ok,
    check_reserved,
    err_arity,
    unknown_command,
    unsupported,
)
from .transactions import QUEUED, abort_transaction
from .transactions import queue as queue_command

if TYPE_CHECKING:  # pragma: no cover
    from .app import App
    from .session import Session

log = logging.getLogger("redquorum.server")

NOAUTH = Rejected("NOAUTH Authentication required.")


def dispatch(app: App, session: Session, args: list[bytes], batch: Batch) -> bool:
    """Run one command of ``batch``; False, doing nothing, when it has to wait for the
    batch's pending replies: it touches a key an earlier write of the batch touches, it
    is a barrier (see ``Command.barrier``), or it follows an EXEC. Between MULTI and
    EXEC, commands are queued instead (proxy/commands/transactions.py)."""
    name = args[0].lower()
    spec = TABLE.get(name)
    keys: list[bytes] = []
    if batch.fenced and batch.pending:
        return False
    if session.multi is not None and (spec is None or not spec.in_multi):
        app.total_commands += 1
        batch.names.append(name)
        batch.results.append(queue_command(app, session, args, spec))
        return True
    if spec is not None:
        if spec.first_key:
            keys = spec.keys(args)
            written = batch.written
            if written and batch.pending and any(key in written for key in keys):
                return False
        elif spec.barrier and batch.pending:
            return False
    app.total_commands += 1
    batch.names.append(name)
    if spec is None:
        text = name.decode(errors="replace")
        batch.results.append(unsupported(text) if text in UNSUPPORTED else unknown_command(args))
        return True
    if not session.authenticated and "noauth" not in spec.flags:
        batch.results.append(NOAUTH)
        return True
    if not arity_ok(spec, len(args)):
        error: ReplyError = Rejected(err_arity(spec.name).text)
        if session.multi is not None:  # EXEC x, DISCARD x... inside MULTI, as Redis
            error = abort_transaction(session, spec, error)
        batch.results.append(error)
        return True
    user = session.user
    if not user.unrestricted and "noauth" not in spec.flags:
        denied = user.denied(spec, args, keys)
        if denied is not None:
            batch.results.append(denied)
            return True
    if keys:
        bad = check_reserved(keys)
        if bad is not None:
            batch.results.append(Rejected(bad.text))
            return True
        if spec.writes:
            if batch.written is None:
                batch.written = set(keys)
            else:
                batch.written.update(keys)
    if spec.container and len(args) > 1:
        batch.names[-1] = name + b"|" + args[1].lower()
        refused = subcommand_error(spec.name, args)
        if refused is not None:
            batch.results.append(Rejected(refused.text))
            return True
    try:
        result = spec.handler(app, session, args, batch)
    except Exception:
        log.exception("command %r failed", name)
        result = ReplyError(f"ERR redquorum: internal error in '{spec.name}' (see the proxy log)")
    if result is not DEFERRED:
        batch.results.append(result)
    return True


class BatchCounter:
    """Counts each command of a batch by outcome, with the batch's latency (for
    Prometheus and INFO: proxy/replication/counters.py)."""

    def __init__(self, command_stats: CommandStats, info_stats: InfoStats) -> None:
        self.command_stats = command_stats
        self.info_stats = info_stats
        # command name as sent, lowercased → its statistics entry (CommandStats keeps
        # entries for good, so the lists can be held here)
        self.entries: dict[bytes, list] = {}

    def record(self, batch: Batch, seconds: float) -> None:
        entries = self.entries
        bucket = bisect_left(LATENCY_BUCKETS, seconds)
        fine = fine_bucket(seconds)
        for name, result in zip(batch.names, batch.results, strict=False):
            counts = entries.get(name)
            if counts is None:
                counts = self._entry_of(name)
            histogram = counts[3]
            histogram.counts[bucket] += 1
            histogram.total += seconds
            kind = type(result)
            if kind is ReplyError or kind is Rejected:
                self._count_error(counts, result, seconds, fine)
            elif result is QUEUED:  # it runs, and counts as a call, at EXEC
                counts[0] += 1
                counts[6] += 1
                counts[7] += seconds
            else:
                counts[0] += 1
                counts[4][fine] += 1

    def _entry_of(self, name: bytes) -> list:
        """The statistics entry of a command name, kept by name for the next batches
        (bounded: only served command names are kept; unknown ones all count as "other")."""
        label = label_of(name)
        counts = self.command_stats.entry(label)
        if label != "other":
            self.entries[name] = counts
        return counts

    def _count_error(self, counts: list, error: Any, seconds: float, fine: int) -> None:
        text: str = error.text
        counts[2 if text.startswith("NOQUORUM") else 1] += 1
        self.info_stats.error(text)
        if type(error) is Rejected:  # refused before running: not a call
            counts[5] += 1
            counts[7] += seconds
        else:
            counts[4][fine] += 1


def label_of(name: bytes) -> str:
    """The statistics name of a command: its table name, ``container|subcommand`` for
    a subcommand served, else the container's name; "other" for unknown commands."""
    container, _, sub = name.partition(b"|")
    spec = TABLE.get(container)
    if spec is None:
        return "other"
    text = sub.decode(errors="replace")
    return f"{spec.name}|{text}" if text in SUBCOMMANDS.get(spec.name, ()) else spec.name
