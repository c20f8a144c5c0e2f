"""ACL rules applied in order (as Redis applies them), and the glob matcher held to a
plain recursive reference on small inputs."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redquorum.commands.acl import AclUser, categories
from redquorum.commands.table import TABLE
from redquorum.protocol.glob import stringmatch


def user(rules: str) -> AclUser:
    u = AclUser("u")
    u.apply(rules.split())
    return u


def allowed(u: AclUser, *args: str) -> bool:
    argv = [a.encode() for a in args]
    spec = TABLE[argv[0].lower()]
    return u.denied(spec, argv, spec.keys(argv)) is None


def test_rules_apply_in_order():
    u = user("on +@all -@write +set ~*")
    assert allowed(u, "GET", "k") and allowed(u, "SET", "k", "v")
    assert not allowed(u, "DEL", "k") and not allowed(u, "INCR", "k")
    u = user("on -@all +@read ~*")
    assert allowed(u, "GET", "k") and not allowed(u, "SET", "k", "v")
    u = user("on +@read -@all +ping ~*")
    assert not allowed(u, "GET", "k") and allowed(u, "PING")
    assert user("on allcommands allkeys").unrestricted
    assert not user("on allcommands allkeys -ping").unrestricted


def test_subcommands_and_containers():
    u = user("on +client|id")
    assert allowed(u, "CLIENT", "ID") and not allowed(u, "CLIENT", "LIST")
    u = user("on +client -client|list")
    assert allowed(u, "CLIENT", "SETNAME", "x") and not allowed(u, "CLIENT", "LIST")
    assert "config|get" in {n for n, c in categories().items() if "admin" in c}


def test_key_patterns_cover_every_key_argument():
    u = user("on +@all ~app:* ~tmp:?")
    assert allowed(u, "MSET", "app:1", "x", "tmp:2", "y")
    assert not allowed(u, "MSET", "app:1", "x", "other", "y")
    assert not allowed(u, "RENAME", "app:1", "tmp:22")
    assert allowed(u, "DBSIZE")
    u = user("on +@all ~app:* resetkeys ~x")
    assert not allowed(u, "GET", "app:1") and allowed(u, "GET", "x")


def test_passwords_are_hashes_and_nopass_resets_them():
    u = user("on >one >two")
    assert u.check_password(b"one") and u.check_password(b"two")
    assert not u.check_password(b"three")
    assert all(len(h) == 64 for h in u.hashes) and "one" not in u.describe()
    assert user("on >one <one").hashes == []
    assert user("on >one nopass").check_password(b"anything")
    assert not user("on nopass >one").check_password(b"anything")
    assert not user("on >one reset").enabled


@pytest.mark.parametrize("bad", ["+@nope", "+nosuch", "#12", "%R~x", "bogus"])
def test_unknown_rules_are_errors(bad):
    with pytest.raises(ValueError):
        user(bad)


@functools.cache
def reference(p: bytes, s: bytes) -> bool:
    """Glob by plain recursion over Redis's rules (exponential: small inputs only)."""
    if not p:
        return not s
    if p[0] == 42:
        return reference(p[1:], s) or (bool(s) and reference(p, s[1:]))
    if not s:
        return False
    if p[0] == 63:
        return reference(p[1:], s[1:])
    if p[0] == 91:
        i, negate, matched = 1, p[1:2] == b"^", False
        if negate:
            i += 1
        while i < len(p) and p[i] != 93:
            if p[i] == 92 and i + 1 < len(p):
                i += 1
                matched |= p[i] == s[0]
            elif i + 2 < len(p) and p[i + 1] == 45:
                lo, hi = sorted((p[i], p[i + 2]))
                matched |= lo <= s[0] <= hi
                i += 2
            else:
                matched |= p[i] == s[0]
            i += 1
        return (matched != negate) and reference(p[i + 1:], s[1:])
    if p[0] == 92 and len(p) > 1:
        return p[1] == s[0] and reference(p[2:], s[1:])
    return p[0] == s[0] and reference(p[1:], s[1:])


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=8).map(lambda b: bytes(b"ab*?[]^-\\"[x % 9] for x in b)),
       st.binary(max_size=8).map(lambda b: bytes(b"ab-]["[x % 5] for x in b)))
def test_glob_agrees_with_the_recursive_reference(pattern, string):
    assert stringmatch(pattern, string) == reference(pattern, string)
