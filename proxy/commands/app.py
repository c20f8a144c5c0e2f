"""What command handlers may use of the proxy: the application protocol type.

Handlers are written against ``App`` rather than the concrete server class
(proxy/server/app.py), so the command layer never imports the server layer and a test
can drive a handler with a small object of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config
    from ..replication.canary import Canary
    from ..replication.contexts import ContextSigner
    from ..replication.coordinator import Coordinator
    from ..replication.counters import InfoStats
    from ..replication.events import Events
    from ..replication.links import Link
    from .acl import AclUser
    from .commanddata import CommandData
    from .session import Session
    from .table import Batch


class App(Protocol):
    config: Config
    coordinator: Coordinator
    sessions: dict[int, Session]
    events: Events
    canary: Canary
    contexts: ContextSigner
    commanddata: CommandData
    started: float
    total_connections: int
    total_commands: int
    info_stats: InfoStats
    rejected_connections: int
    listen_address: tuple[str, int] | None
    users: dict[str, AclUser]

    # read-only, so the server's dict of its own link type satisfies it
    @property
    def links(self) -> Mapping[str, Link]: ...

    def version(self) -> str: ...
    def dispatch(self, session: Session, args: list[bytes], batch: Batch) -> bool: ...
    def authenticate(self, session: Session, password: bytes, user: bytes | None) -> Any: ...
    def client_line(self, s: Session) -> str: ...
    def client_gone(self, session: Session) -> None: ...
    def record_batch(self, batch: Batch, seconds: float) -> None: ...
