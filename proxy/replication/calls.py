"""``Call``, the payload of a replica write function (built by wire.py's ``fcall``).

A module of its own because it subclasses ``bytes``: wire.py is compiled ahead of time
when it can be (scripts/build_native.py), and a compiled class cannot subclass a
builtin, so this one stays a Python class in every build.
"""

from __future__ import annotations


class Call(bytes):
    """One call of a replica write function: the bytes are ``FCALL function 1 key
    args…``; ``entry`` is ``count crc function 1 key args…`` for ``rq_many`` (``count``
    strings from the function's name on, ``crc`` the key's crc32), ``width`` how many
    strings ``entry`` is. (bytes subclasses cannot have non-empty ``__slots__``.)"""

    entry: bytes
    width: int
