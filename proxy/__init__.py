"""redquorum: a Redis-protocol proxy over leaderless, quorum-replicated Redis servers."""

__version__ = "0.1.0"
