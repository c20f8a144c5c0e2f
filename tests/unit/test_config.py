"""Settings: one table (config.SETTINGS) gives every default and every flag's help, and
``redquorum up`` loads its configuration the way ``serve`` does."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from redquorum import cli
from redquorum.config import SETTINGS, Config, Replica, build, help_text, load
from redquorum.replicas.launcher import free_port

REPLICAS = [Replica(f"r{i}", "127.0.0.1", 7000 + i) for i in range(1, 4)]


def subparser(name: str) -> argparse.ArgumentParser:
    actions = cli.parser()._subparsers._group_actions[0]  # noqa: SLF001 - argparse keeps them there
    return actions.choices[name]


def test_config_takes_no_default_of_its_own():
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(Config))


@pytest.mark.parametrize(("name", "changed", "attribute", "expected", "shown"), [
    ("replica_timeout", 0.75, "replica_timeout", 0.75, "0.75"),
    ("mode", "lww", "mode", "lww", "lww"),
    ("listen", "127.0.0.1:6390", "listen", ("127.0.0.1", 6390), "127.0.0.1:6390"),
    ("sibling_hard_limit", 42, "sibling_hard_limit", 42, "42"),
    ("client_output_buffer_limit", "1mb 0 0", "output_limit", (1024**2, 0, 0.0), "1mb 0 0"),
])
def test_a_default_changed_in_the_table_changes_the_config_and_the_help(
        monkeypatch, name, changed, attribute, expected, shown):
    monkeypatch.setitem(SETTINGS, name, dataclasses.replace(SETTINGS[name], default=changed))
    value = getattr(build({}, REPLICAS), attribute)
    assert (tuple(dataclasses.astuple(value)) if attribute == "output_limit" else value) == expected
    for command in ("serve", "up"):
        helps = {a.dest: a.help for a in subparser(command)._actions}  # noqa: SLF001
        assert f"(default {shown}; env REDQUORUM_{name.upper()})" in helps[name]


def test_every_setting_flag_has_the_help_of_the_table():
    # status's --timeout is its own (how long it waits), not the client idle timeout
    for command, shown, names in (("serve", {}, set(SETTINGS)), ("up", cli.UP_SHOWN, set(SETTINGS)),
                                  ("status", {}, {"n", "w", "r"})):
        flagged = [a for a in subparser(command)._actions if a.dest in names]  # noqa: SLF001
        assert flagged
        for action in flagged:
            assert action.help == help_text(action.dest, shown.get(action.dest))
    assert {a.dest for a in subparser("serve")._actions} >= set(SETTINGS) - {"context_secret"}  # noqa: SLF001


def test_help_text_states_default_and_environment():
    assert help_text("replica_timeout") == \
        "seconds a replica has to answer a request (default 0.5; env REDQUORUM_REPLICA_TIMEOUT)"
    assert help_text("password") == "require clients to AUTH with this (env REDQUORUM_PASSWORD)"
    assert help_text("pbs_t_ms").endswith("(default 0,1,5,10,100; env REDQUORUM_PBS_T_MS)")
    assert help_text("n", "min(3, --replicas)") == \
        "replicas per key (default min(3, --replicas); env REDQUORUM_N)"


def test_the_table_defaults_are_what_build_uses():
    config = build({}, REPLICAS)
    assert config.listen == ("127.0.0.1", 6379) and config.metrics_listen is None
    assert (config.n, config.w, config.r, config.min_w, config.mode) == (3, 2, 2, 2, "causal")
    assert (config.replica_timeout, config.tombstone_grace) == (0.5, 3600.0)
    assert (config.sibling_soft_limit, config.sibling_hard_limit) == (25, 100)
    assert config.pbs_t_ms == (0.0, 1.0, 5.0, 10.0, 100.0) and config.protected_mode


def quorum_file(tmp_path, extra: str = "") -> str:
    path = tmp_path / "redquorum.toml"
    path.write_text(f"""
[proxy]
metrics_listen = "127.0.0.1:9500"

[quorum]
n = 3
w = 3
r = 1
mode = "lww"
{extra}
[[replicas]]
id = "elsewhere"
address = "10.0.0.1:{free_port()}"
""")
    return str(path)


def test_up_honours_the_file_and_puts_its_replicas_in_place_of_the_file_ones(tmp_path):
    config = cli.up_config({"config": quorum_file(tmp_path)}, {}, REPLICAS)
    assert (config.n, config.w, config.r, config.mode) == (3, 3, 1, "lww")
    assert config.metrics_listen == ("127.0.0.1", 9500)  # the file's, above up's default
    assert [r.id for r in config.replicas] == ["r1", "r2", "r3"]


def test_up_precedence_is_file_then_environment_then_flags(tmp_path):
    path = quorum_file(tmp_path)
    env = {"REDQUORUM_W": "2", "REDQUORUM_R": "2", "REDQUORUM_METRICS_LISTEN": "127.0.0.1:9501"}
    from_env = cli.up_config({"config": path}, env, REPLICAS)
    assert (from_env.w, from_env.r, from_env.mode) == (2, 2, "lww")
    assert from_env.metrics_listen == ("127.0.0.1", 9501)
    from_flags = cli.up_config({"config": path, "r": 3, "metrics_listen": "127.0.0.1:9502"},
                               env, REPLICAS)
    assert (from_flags.w, from_flags.r) == (2, 3)
    assert from_flags.metrics_listen == ("127.0.0.1", 9502)
    from_env_file = cli.up_config({}, {"REDQUORUM_CONFIG": path}, REPLICAS)
    assert from_env_file.w == 3  # REDQUORUM_CONFIG names the file, as for serve


def test_up_defaults_sit_below_everything(tmp_path):
    two = REPLICAS[:2]
    config = cli.up_config({}, {}, two)
    assert (config.n, config.w, config.r) == (2, 2, 2)
    assert config.metrics_listen == ("127.0.0.1", 9379)
    assert cli.up_config({}, {"REDQUORUM_N": "1"}, two).n == 1
    assert cli.up_config({"metrics_listen": ""}, {}, two).metrics_listen is None
    # serve has no metrics endpoint unless one is configured
    assert load({}, {}, replicas=two).metrics_listen is None


def test_up_reads_the_file_users(tmp_path):
    path = quorum_file(tmp_path, '[[users]]\nname = "ops"\npassword = "secret"\nrules = "on"\n')
    # [[users]] is a top-level array: the quorum table above ends where it starts
    config = cli.up_config({"config": path}, {}, REPLICAS)
    assert [u.name for u in config.users] == ["ops"]
