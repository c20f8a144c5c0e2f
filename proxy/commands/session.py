"""One client connection's state, as the commands see it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .app import App


class Session:
    """One client connection's state."""

    __slots__ = ("id", "addr", "proto", "name", "lib_name", "lib_ver", "r", "w",
                 "authenticated", "user", "closing", "created", "last_command", "multi",
                 "multi_dirty", "watch_refused")

    def __init__(self, ident: int, addr: str, app: App) -> None:
        self.id = ident
        self.addr = addr
        self.created = time.time()
        self.last_command = b""
        self.closing = False
        self.reset(app)

    def reset(self, app: App) -> None:
        self.proto = 2
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.r = app.config.r
        self.w = app.config.w
        # Redis: a connection starts as the default user, authenticated if that user is
        # enabled and needs no password
        self.user = app.users["default"]
        self.authenticated = self.user.enabled and self.user.nopass
        self.discard_transaction()

    def discard_transaction(self) -> None:
        self.multi: list[list[bytes]] | None = None  # the commands queued since MULTI
        self.multi_dirty = False  # a command was refused while queueing: EXEC aborts
        self.watch_refused = False  # a WATCH was refused: the next EXEC aborts
