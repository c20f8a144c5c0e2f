"""Redis's glob matching (util.c ``stringmatchlen``), for CONFIG GET, COMMAND LIST, ACL
key patterns and KEYS/SCAN patterns.

Theory of operation. Every pattern element but ``*`` matches exactly one byte (``?``, a
``[...]`` class, an escaped or plain byte), so a match is the classic wildcard walk with
one backtracking point: the most recent ``*``. When an element fails, the walk goes back
to just after that star and lets the star swallow one more byte. Backtracking further,
to an earlier star, is never needed: an earlier star taking more bytes would only ask
the part after the later star to match starting later in the string, which was just
tried. That is the argument behind Redis 7's ``skipLongerMatches``; it makes the work
O(pattern × string) instead of exponential in the number of stars (``*a*a*a*a*b``).
Redis also gives up on patterns that nest more than 1000 stars; so does this.
"""

from __future__ import annotations

MAX_STARS = 1000  # Redis's nesting limit


def stringmatch(pattern: bytes, string: bytes, nocase: bool = False) -> bool:
    if nocase:
        pattern, string = pattern.lower(), string.lower()
    return _match(pattern, string)


def _match(p: bytes, s: bytes) -> bool:
    plen, slen = len(p), len(s)
    pi = si = 0
    star_p = star_s = -1  # after the last star, and where its match ends so far
    stars = 0
    while si < slen:
        if pi < plen and p[pi] == 42:  # '*'
            while pi < plen and p[pi] == 42:
                pi += 1
            if pi == plen:
                return True
            stars += 1
            if stars > MAX_STARS:
                return False
            star_p, star_s = pi, si
            continue
        if pi < plen:
            after = _one(p, pi, s[si])
            if after >= 0:
                pi = after
                si += 1
                continue
        if star_p < 0:
            return False
        star_s += 1  # the last star takes one more byte
        pi, si = star_p, star_s
    while pi < plen and p[pi] == 42:
        pi += 1
    return pi == plen


def _one(p: bytes, pi: int, c: int) -> int:
    """Where the pattern continues if the element at ``pi`` matches byte ``c``; -1 if not."""
    plen = len(p)
    head = p[pi]
    if head == 63:  # '?'
        return pi + 1
    if head == 91:  # '['
        pi += 1
        negate = pi < plen and p[pi] == 94
        if negate:
            pi += 1
        matched = False
        while pi < plen and p[pi] != 93:
            if p[pi] == 92 and pi + 1 < plen:
                pi += 1
                matched |= p[pi] == c
            elif pi + 2 < plen and p[pi + 1] == 45:
                lo, hi = sorted((p[pi], p[pi + 2]))
                matched |= lo <= c <= hi
                pi += 2
            else:
                matched |= p[pi] == c
            pi += 1
        if negate:
            matched = not matched
        if not matched:
            return -1
        return pi + 1 if pi < plen else plen  # an unclosed class ends with the pattern
    if head == 92 and pi + 1 < plen:
        pi += 1
        head = p[pi]
    return pi + 1 if head == c else -1
