"""The reply value types the codec (resp.py) encodes and the command handlers build.

They live apart from the codec because they are subclassed outside it (``Rejected`` is a
``ReplyError``) and subclass builtins (``str``, ``list``): the codec may be compiled
ahead of time (scripts/build_native.py), and a compiled class can do neither, so these
stay plain Python classes in every build.
"""

from __future__ import annotations


class ReplyError(Exception):
    """An error reply, encoded as ``-<text>``. Also used as a value, not only raised."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Simple(str):
    """A simple string reply (``+OK``)."""


class Verbatim(str):
    """A RESP3 verbatim string (``=``), a bulk string in RESP2 (INFO, CLIENT INFO...)."""


class Push(list):  # pragma: no cover - reserved for pub/sub-like replies
    """A RESP3 push frame."""


class SetReply(list):
    """A RESP3 set (``~``) that keeps its order (an array in RESP2): COMMAND's flags."""
