"""Redis's glob matching (util.c ``stringmatchlen``), for CONFIG GET, COMMAND LIST and
KEYS/SCAN patterns."""

from __future__ import annotations


def stringmatch(pattern: bytes, string: bytes, nocase: bool = False) -> bool:
    if nocase:
        pattern, string = pattern.lower(), string.lower()
    return _match(pattern, 0, string, 0)


def _match(p: bytes, pi: int, s: bytes, si: int) -> bool:
    while pi < len(p) and si < len(s):
        c = p[pi]
        if c == 42:  # '*'
            while pi + 1 < len(p) and p[pi + 1] == 42:
                pi += 1
            if pi + 1 == len(p):
                return True
            return any(_match(p, pi + 1, s, k) for k in range(si, len(s)))
        if c == 63:  # '?'
            si += 1
        elif c == 91:  # '['
            pi += 1
            negate = pi < len(p) and p[pi] == 94
            if negate:
                pi += 1
            matched = False
            while pi < len(p) and p[pi] != 93:
                if p[pi] == 92 and pi + 1 < len(p):
                    pi += 1
                    matched |= p[pi] == s[si]
                elif pi + 2 < len(p) and p[pi + 1] == 45:
                    lo, hi = sorted((p[pi], p[pi + 2]))
                    matched |= lo <= s[si] <= hi
                    pi += 2
                else:
                    matched |= p[pi] == s[si]
                pi += 1
            if negate:
                matched = not matched
            if not matched:
                return False
            si += 1
        else:
            if c == 92 and pi + 1 < len(p):
                pi += 1
                c = p[pi]
            if c != s[si]:
                return False
            si += 1
        pi += 1
    while pi < len(p) and p[pi] == 42:
        pi += 1
    return pi == len(p) and si == len(s)

