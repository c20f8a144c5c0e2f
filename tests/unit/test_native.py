"""Which variant runs: the modules scripts/build_native.py compiled, or pure Python.

proxy/__init__.py loads a compiled build only when it matches every source; these tests
check that what it reports is what was imported, and that a build that does not match
(an edited module, another interpreter, a file missing, turned off) is refused whole.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from importlib.machinery import ExtensionFileLoader
from pathlib import Path

import redquorum
from redquorum import native_build

SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
PACKAGE = Path(redquorum.__file__).resolve().parent
BUILD_SCRIPT = PACKAGE.parent / "scripts" / "build_native.py"


def compiled_modules() -> list[str]:
    """The modules the build script compiles (read from it, not imported: it is a script)."""
    source = BUILD_SCRIPT.read_text()
    block = source[source.index("MODULES = [") : source.index("]", source.index("MODULES = ["))]
    return [line.strip().strip('",') for line in block.splitlines()[1:] if line.strip()]


def loaded_compiled(module: str) -> bool:
    loaded = importlib.import_module(f"redquorum.{module}")
    return isinstance(loaded.__spec__.loader, ExtensionFileLoader)


def left_out() -> list[str]:
    """The modules the last build left out (mypyc rejected them): they run as Python."""
    try:
        return json.loads((PACKAGE / "_native" / "manifest.json").read_text()).get("left_out", [])
    except OSError:
        return []


def test_the_reported_variant_is_the_one_imported() -> None:
    modules = compiled_modules()
    assert "replication.coordinator" in modules and "protocol.resp" in modules
    if redquorum.NATIVE:
        assert sorted(redquorum.NATIVE) == sorted(set(modules) - set(left_out()))
        assert redquorum.NATIVE_STATUS == f"compiled with mypyc: {len(redquorum.NATIVE)} modules"
    else:
        assert redquorum.NATIVE_STATUS.startswith("pure Python: ")
    for module in modules:
        assert loaded_compiled(module) == (module in redquorum.NATIVE), module


def test_a_fresh_build_in_this_checkout_is_used() -> None:
    """What bootstrap built must be what runs (unless turned off): a build that silently
    fell back to Python would cost its speed unnoticed."""
    files, status = native_build(PACKAGE / "_native", PACKAGE, {})
    assert bool(files) == bool(redquorum.NATIVE) or os.environ.get("REDQUORUM_NATIVE") == "0", status


def fake_build(tmp_path: Path, modules: dict[str, bytes]) -> tuple[Path, Path]:
    """A package with ``modules`` (name → source) and a build whose manifest matches it."""
    package, build = tmp_path / "pkg", tmp_path / "build"
    sources = {}
    for name, text in modules.items():
        parts = name.split(".")
        source = package.joinpath(*parts).with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(text)
        sources[name] = hashlib.sha256(text).hexdigest()
        (build.joinpath(*parts[:-1])).mkdir(parents=True, exist_ok=True)
        build.joinpath(*parts[:-1], parts[-1] + SUFFIX).write_bytes(b"")
    (build / ("_native__mypyc" + SUFFIX)).write_bytes(b"")
    (build / "manifest.json").write_text(json.dumps({"suffix": SUFFIX, "sources": sources}))
    return package, build


def test_a_matching_build_is_loaded_with_its_shared_library(tmp_path: Path) -> None:
    package, build = fake_build(tmp_path, {"protocol.resp": b"x = 1\n", "replication.wire": b"y = 2\n"})
    files, status = native_build(build, package, {})
    assert files == {
        "redquorum._native__mypyc": build / ("_native__mypyc" + SUFFIX),
        "redquorum.protocol.resp": build / "protocol" / ("resp" + SUFFIX),
        "redquorum.replication.wire": build / "replication" / ("wire" + SUFFIX),
    }
    assert status == "compiled with mypyc: 2 modules"


def test_an_edited_module_turns_the_whole_build_off(tmp_path: Path) -> None:
    package, build = fake_build(tmp_path, {"protocol.resp": b"x = 1\n", "replication.wire": b"y = 2\n"})
    (package / "replication" / "wire.py").write_bytes(b"y = 3\n")
    files, status = native_build(build, package, {})
    assert files == {}
    assert status == "pure Python: the compiled build is older than replication.wire: rebuild it"


def test_a_build_for_another_python_a_missing_file_or_none_is_refused(tmp_path: Path) -> None:
    package, build = fake_build(tmp_path, {"protocol.resp": b"x = 1\n"})
    (build / "protocol" / ("resp" + SUFFIX)).unlink()
    assert native_build(build, package, {}) == (
        {}, "pure Python: the compiled build lacks redquorum.protocol.resp")
    manifest = json.loads((build / "manifest.json").read_text())
    (build / "manifest.json").write_text(json.dumps({**manifest, "suffix": ".cpython-27.so"}))
    assert native_build(build, package, {}) == ({}, "pure Python: compiled for another Python")
    (build / "manifest.json").write_text("{")
    assert native_build(build, package, {})[1] == "pure Python: the compiled build's manifest is unreadable"
    assert native_build(tmp_path / "nothing", package, {})[1].startswith("pure Python: no compiled build")


def test_redquorum_native_0_turns_it_off(tmp_path: Path) -> None:
    package, build = fake_build(tmp_path, {"protocol.resp": b"x = 1\n"})
    assert native_build(build, package, {"REDQUORUM_NATIVE": "0"}) == ({}, "pure Python: REDQUORUM_NATIVE=0")
    env = {**os.environ, "REDQUORUM_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-m", "redquorum.cli", "--version"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "redquorum 0.1.0 (pure Python: REDQUORUM_NATIVE=0)"
    probe = ("import redquorum, redquorum.replication.coordinator as c; "
             "print(redquorum.NATIVE, c.__spec__.origin.endswith('.py'))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["()", "True"]


def test_version_names_the_variant() -> None:
    out = subprocess.run([sys.executable, "-m", "redquorum.cli", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f"redquorum {redquorum.__version__} ({redquorum.NATIVE_STATUS})"


def test_a_module_mypyc_rejects_is_named_for_leaving_out() -> None:
    spec = importlib.util.spec_from_file_location("build_native", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    log = ("redquorum/replication/wire.py:33: error: Inheriting from most builtin types is unimplemented\n"
           "redquorum/replication/wire.py:40: error: something else\n"
           "redquorum/replication/links.py:5: error: not one of ours\n"
           "redquorum/protocol/resp.py:7: note: a note is no error\n")
    assert script.rejected(log, ["replication.wire", "protocol.resp"]) == {
        "replication.wire": "redquorum/replication/wire.py:33: error: Inheriting from most builtin "
                            "types is unimplemented"}
