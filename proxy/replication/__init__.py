"""The replicated store's logic, as values and callbacks: dotted version vectors (clock),
the ring, the quorum state machines (coordinator), the replica wire format, hinted
handoff, the freshness canary and the events they report.

Nothing here does I/O: it talks to replicas through the ``Link`` interface
(links.py), which proxy/server implements over TCP and the unit tests with a fake.
"""
