"""LCS's bit-parallel table and O(1) walk, held to a direct transcription of Redis's
dynamic programming (the full table, the same walk back) on random strings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from redquorum.commands.lcs import lcs_length, lcs_reply, lcs_walk


def redis_lcs(a: bytes, b: bytes, min_len: int, with_len: bool):
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    out = bytearray()
    ranges = []
    i, j = n, m
    start = None
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            out.append(a[i - 1])
            if start is None:
                start = [i - 1, i - 1, j - 1, j - 1]
            elif start[0] == i and start[2] == j:
                start[0] -= 1
                start[2] -= 1
            else:
                emit = True
            if start[0] == 0 or start[2] == 0:
                emit = True
            i -= 1
            j -= 1
        else:
            if table[i - 1][j] > table[i][j - 1]:
                i -= 1
            else:
                j -= 1
            emit = start is not None
        if emit:
            size = start[1] - start[0] + 1
            if min_len == 0 or size >= min_len:
                entry = [[start[0], start[1]], [start[2], start[3]]]
                if with_len:
                    entry.append(size)
                ranges.append(entry)
            start = None
    return bytes(reversed(out)), ranges, table[n][m]


texts = st.binary(max_size=40) | st.text(alphabet="abcd", max_size=40).map(str.encode)


@settings(max_examples=500, deadline=None)
@given(a=texts, b=texts, min_len=st.integers(0, 4), with_len=st.booleans())
def test_walk_matches_redis_dynamic_programming(a, b, min_len, with_len):
    expected = redis_lcs(a, b, min_len, with_len)
    assert lcs_walk(a, b, min_len, with_len) == expected
    assert lcs_length(a, b) == expected[2]


def test_reply_shapes_and_errors():
    assert lcs_reply(b"ohmytext", b"mynewtext", []) == b"mytext"
    assert lcs_reply(b"ohmytext", b"mynewtext", [b"LEN"]) == 6
    assert lcs_reply(b"ohmytext", b"mynewtext", [b"idx", b"minmatchlen", b"2", b"withmatchlen"]) == {
        b"matches": [[[4, 7], [5, 8], 4], [[2, 3], [0, 1], 2]], b"len": 6}
    assert lcs_reply(b"a", b"b", [b"LEN", b"IDX"]).text.startswith("ERR If you want both")
    assert lcs_reply(b"a", b"b", [b"MINMATCHLEN"]).text == "ERR syntax error"
    assert lcs_reply(b"a" * 12000, b"a" * 12000, [b"LEN"]).text.startswith("ERR Insufficient memory")
