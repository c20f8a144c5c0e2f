"""MULTI, EXEC, DISCARD; WATCH and UNWATCH refused.

Between MULTI and EXEC a connection's commands are checked (known command, arity,
subcommand, reserved keys) and queued on its ``Session``, answering ``+QUEUED``; nothing
queued runs before EXEC. A command refused while queueing marks the transaction dirty
and its EXEC answers EXECABORT, running nothing: a transaction never half-applies
because of a command Redis would have rejected before running any.

EXEC runs the queued commands one after the other on this connection, each dispatched
as a batch of its own, the next one only once the previous one has its reply: each
command has its own quorum and reads what the previous ones wrote. Other clients'
commands interleave freely (no isolation), and keys are not written atomically together
(docs/guarantees.md). The EXEC reply is the array of the results, errors as elements.

WATCH cannot be offered: a leaderless store has no single place that sees every write of
a key, so "the key changed since WATCH" cannot be detected across replicas. It is refused,
and a transaction that follows a refused WATCH on the same connection aborts at EXEC, so
a client that pipelines WATCH … MULTI … EXEC without reading the WATCH reply never runs
its transaction unguarded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..protocol.resp import OK, ReplyError, Simple
from .commanddata import SUBCOMMANDS
from .connection import subcommand_error
from .table import (
    DEFERRED,
    UNSUPPORTED,
    Batch,
    Command,
    Rejected,
    arity_ok,
    check_reserved,
    command,
    err_arity,
    unknown_command,
    unsupported,
)

if TYPE_CHECKING:  # pragma: no cover
    from .app import App
    from .session import Session

QUEUED = Simple("QUEUED")
EXECABORT = ReplyError("EXECABORT Transaction discarded because of previous errors.")
WATCH_REFUSED = ReplyError(
    "ERR WATCH is not supported by redquorum: replicas accept writes without a leader, so "
    "no single server sees every change of a key and a concurrent change of a watched key "
    "cannot be detected. MULTI/EXEC runs without WATCH (see docs/guarantees.md)")
UNWATCH_REFUSED = ReplyError(
    "ERR UNWATCH is not supported by redquorum: WATCH is refused (a leaderless store cannot "
    "detect a concurrent change of a watched key), so there is nothing to unwatch")


def queue(app: App, s: Session, args: list[bytes], spec: Command | None) -> Any:
    """A command sent between MULTI and EXEC: ``+QUEUED``, or the error Redis gives
    while queueing (which makes EXEC abort)."""
    error = queue_error(args, spec)
    if error is not None:
        s.multi_dirty = True
        return Rejected(error.text) if spec is not None else error
    assert s.multi is not None
    s.multi.append(args)
    return QUEUED


def abort_transaction(s: Session, spec: Command, error: ReplyError) -> ReplyError:
    """A command that runs inside MULTI (EXEC, DISCARD…) was refused before running:
    the transaction is marked dirty, or, for EXEC itself, discarded (Redis's
    execCommandAbort)."""
    if spec.name != "exec":
        s.multi_dirty = True
        return error
    s.discard_transaction()
    reason = error.text.removeprefix("ERR ")
    return Rejected(f"EXECABORT Transaction discarded because of: {reason}")


def queue_error(args: list[bytes], spec: Command | None) -> ReplyError | None:
    if spec is None:
        text = args[0].lower().decode(errors="replace")
        return unsupported(text) if text in UNSUPPORTED else unknown_command(args)
    if not arity_ok(spec, len(args)):
        return err_arity(spec.name)
    if spec.name in SUBCOMMANDS:
        error = subcommand_error(spec.name, args)
        if error is not None:
            return error
    if spec.name == "unwatch":
        return UNWATCH_REFUSED
    return check_reserved(spec.keys(args)) if spec.first_key else None


@command("MULTI", 1, "noscript loading stale fast allow_busy", group="transactions",
         summary="Starts a transaction.")
def cmd_multi(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if s.multi is not None:
        return ReplyError("ERR MULTI calls can not be nested")
    s.multi = []
    return OK


@command("DISCARD", 1, "noscript loading stale fast allow_busy", group="transactions",
         summary="Discards a transaction.")
def cmd_discard(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if s.multi is None:
        return ReplyError("ERR DISCARD without MULTI")
    s.discard_transaction()
    return OK


@command("WATCH", -2, "noscript loading stale fast allow_busy", (1, -1, 1), "transactions",
         "Monitors changes to keys to determine the execution of a transaction.")
def cmd_watch(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if s.multi is not None:
        return ReplyError("ERR WATCH inside MULTI is not allowed")
    s.watch_refused = True
    return WATCH_REFUSED


@command("UNWATCH", 1, "noscript loading stale fast allow_busy", group="transactions",
         summary="Forgets about watched keys of a transaction.")
def cmd_unwatch(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return UNWATCH_REFUSED


@command("EXEC", 1, "noscript loading stale skip_slowlog", group="transactions",
         summary="Executes all commands in a transaction.")
def cmd_exec(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if s.multi is None:
        return ReplyError("ERR EXEC without MULTI")
    queued, aborted = s.multi, s.multi_dirty or s.watch_refused
    s.discard_transaction()
    if aborted:
        return EXECABORT
    batch.fenced = True  # what the client sends after EXEC reads what EXEC wrote
    run_in_order(app, s, queued, batch.defer())
    return DEFERRED


def run_in_order(app: App, s: Session, commands: list[list[bytes]],
                 done: Callable[[Any], None]) -> None:
    """Dispatch ``commands`` one at a time, each once the previous one has its reply;
    then ``done(results)``."""
    results: list[Any] = []

    def step() -> None:
        while len(results) < len(commands):
            sub = Batch()
            started = time.monotonic()
            app.dispatch(s, commands[len(results)], sub)  # a fresh batch never waits
            if sub.pending:
                sub.on_done = resume_after(sub, started)
                return
            finished(sub, started)
        done(results)

    def finished(sub: Batch, started: float) -> None:
        app.record_batch(sub, time.monotonic() - started)
        results.append(sub.results[0])

    def resume_after(sub: Batch, started: float) -> Callable[[], None]:
        def resume() -> None:
            finished(sub, started)
            step()
        return resume

    step()
