"""Security against a real proxy over real redis-servers: protected mode, resource limits,
named users (ACL), authentication failures."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redquorum.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------
# protected mode


def test_protected_mode_refuses_a_public_address_without_a_password(replicas):
    replica_args = [a for r in replicas for a in ("--replica", f"{r.id}={r.address}")]
    result = run_cli("serve", "--listen", "0.0.0.0:1", *replica_args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "protected mode" in lines[0] and "--protected-mode no" in lines[0]
    assert "--password" in lines[0]


def test_protected_mode_allows_loopback_a_password_or_an_explicit_no():
    from redquorum.config import ConfigError, Replica, User, build, password_hash

    replica = [Replica("r1", "127.0.0.1", 7000)]
    build({"listen": "127.0.0.1:7001"}, replica)
    build({"listen": "[::1]:7001"}, replica)
    build({"listen": "0.0.0.0:7001", "password": "s3cret"}, replica)
    build({"listen": "0.0.0.0:7001", "protected_mode": "no"}, replica)
    closed_default = [User("default", "off"), User("app", "on ~* +@all",
                                                   (password_hash(b"pw"),))]
    build({"listen": "0.0.0.0:7001"}, replica, closed_default)
    for users in ([], [User("app", "on ~* +@all", (password_hash(b"pw"),))],
                  [User("default", "on nopass ~* +@all")]):
        try:
            build({"listen": "10.1.2.3:7001"}, replica, users)
        except ConfigError as exc:
            assert "protected mode" in str(exc)
        else:
            raise AssertionError(f"protected mode let {users} listen openly")
