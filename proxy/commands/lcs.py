"""LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN], over quorum reads of both keys.

Redis fills the whole (len1+1)×(len2+1) table of LCS lengths and walks it back from the
end. A Python loop over that table would hold the proxy's only thread for seconds, so
the table is computed a row at a time with the bit-parallel recurrence of Allison–Dix
and Hyyrö: row ``i`` is an integer ``V`` over the positions of the second string, and
LCS(a[:i], b[:j]) is the number of zero bits among the low ``j`` bits of ``V``; one row
costs a few big-integer operations instead of ``len2`` Python steps.

The walk back then reproduces Redis's exactly (a match goes diagonally; otherwise up when
LCS(i-1, j) > LCS(i, j-1), else left), so the string, the ranges and their order are
Redis's. It keeps LCS(i, j) and LCS(i-1, j) as it moves, reading single bits from the
binary text of the two rows it stands on, so each step is O(1) and each row change one
popcount. Replies and errors follow redis-server 7.0, including its limit on the table's
size (4 bytes a cell, at most proto-max-bulk-len).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol.resp import ReplyError
from .strings import MAX_STRING
from .table import DEFERRED, NOT_INT, SYNTAX, Batch, command, parse_int

if TYPE_CHECKING:  # pragma: no cover
    from .app import App
    from .session import Session

TOO_LARGE = ReplyError("ERR Insufficient memory, transient memory for LCS exceeds "
                       "proto-max-bulk-len")


@command("LCS", -3, "readonly", (1, 2, 1), "string", "Finds the longest common substring.")
def cmd_lcs(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()

    def finish(values: Any) -> None:
        if isinstance(values, ReplyError):
            done(values)
            return
        done(lcs_reply(values[0] or b"", values[1] or b"", args[3:]))

    app.coordinator.read_many(args[1:3], s.r, finish, plain=True)
    return DEFERRED


def lcs_reply(a: bytes, b: bytes, options: list[bytes]) -> Any:
    """Redis 7.0's lcsCommand, after the keys are read (it parses options only then)."""
    get_len = get_idx = with_len = False
    min_len = 0
    i = 0
    while i < len(options):
        opt = options[i].lower()
        if opt == b"idx":
            get_idx = True
        elif opt == b"len":
            get_len = True
        elif opt == b"withmatchlen":
            with_len = True
        elif opt == b"minmatchlen" and i + 1 < len(options):
            number = parse_int(options[i + 1])
            if number is None:
                return NOT_INT
            min_len = max(number, 0)
            i += 1
        else:
            return SYNTAX
        i += 1
    if get_idx and get_len:
        return ReplyError("ERR If you want both the length and indexes, please just use IDX.")
    if (len(a) + 1) * (len(b) + 1) * 4 > MAX_STRING:
        return TOO_LARGE
    if get_len:
        return lcs_length(a, b)
    common, ranges, length = lcs_walk(a, b, min_len, with_len)
    if get_idx:
        return {b"matches": ranges, b"len": length}
    return common


def char_masks(b: bytes) -> dict[int, int]:
    """For each byte value in ``b``: the integer with bit j set where ``b[j]`` is it."""
    reverse = b[::-1]  # the last character of the text is bit 0
    masks = {}
    for c in set(b):
        table = bytearray(b"0" * 256)
        table[c] = ord("1")
        masks[c] = int(reverse.translate(table), 2)
    return masks


def lcs_rows(a: bytes, b: bytes) -> list[int]:
    """The bit-parallel rows for the prefixes of ``a`` (row 0: the empty prefix)."""
    full = (1 << len(b)) - 1
    masks = char_masks(b)
    v = full
    rows = [v]
    for c in a:
        u = v & masks.get(c, 0)
        v = ((v + u) | (v - u)) & full
        rows.append(v)
    return rows


def lcs_length(a: bytes, b: bytes) -> int:
    if len(a) > len(b):  # the length is symmetric: loop over the shorter string
        a, b = b, a
    return len(b) - lcs_rows(a, b)[-1].bit_count()


def lcs_walk(a: bytes, b: bytes, min_len: int, with_len: bool) -> tuple[bytes, list[Any], int]:
    """(the common subsequence, IDX's ranges, its length), walking back as Redis does."""
    n, m = len(a), len(b)
    rows = lcs_rows(a, b)

    def text(i: int) -> str:  # text(i)[m - j] is row i's bit j - 1
        return bin(rows[i])[2:].zfill(m)

    def value(i: int, j: int) -> int:  # LCS(a[:i], b[:j])
        return j - (rows[i] & ((1 << j) - 1)).bit_count()

    length = value(n, m)
    common = bytearray()
    ranges: list[Any] = []
    if not n or not m:
        return b"", ranges, length
    i, j = n, m
    here, above = text(i), text(i - 1)
    cur, up = length, value(i - 1, j)  # LCS(i, j) and LCS(i - 1, j)
    a_start = a_end = b_start = b_end = -1
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            common.append(a[i - 1])
            if a_start < 0:
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            cur = up - (above[m - j] == "0")
            i -= 1
            j -= 1
            if i:
                here, above = above, text(i - 1)
                up = value(i - 1, j)
        else:
            left = cur - (here[m - j] == "0")  # LCS(i, j - 1)
            if up > left:
                i -= 1
                cur = up
                if i:
                    here, above = above, text(i - 1)
                    up = value(i - 1, j)
            else:
                up -= above[m - j] == "0"
                cur = left
                j -= 1
            emit = a_start >= 0
        if emit:
            match = a_end - a_start + 1
            if min_len == 0 or match >= min_len:
                entry: list[Any] = [[a_start, a_end], [b_start, b_end]]
                if with_len:
                    entry.append(match)
                ranges.append(entry)
            a_start = -1
    common.reverse()
    return bytes(common), ranges, length
