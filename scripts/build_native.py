"""Compile the proxy's hot modules ahead of time with mypyc; pure Python stays the fallback.

    .venv/bin/python scripts/build_native.py          # build if missing or out of date
    .venv/bin/python scripts/build_native.py --force  # build again
    .venv/bin/python scripts/build_native.py --clean  # remove the build: pure Python

scripts/bootstrap.sh runs it after installing the project. The modules below (the
per-request path: RESP codec, quorum state machines, FCALL payloads, version vectors,
client connections, the reactor, the dispatcher, the command table and the string
commands) are compiled from a copy of proxy/ named ``redquorum`` (mypyc names extension modules after their
package) into proxy/_native/, with a manifest of the sources' digests. proxy/__init__.py
loads them from there only while every digest still matches the source beside it, so an
edited module runs as Python until the next build.

Nothing here is required: without mypy, a C compiler or Python's headers, it says so on
stderr, removes any earlier build and exits 0; the proxy then runs the same code as pure
Python. A module mypyc rejects (say, a class that subclasses ``bytes``) is left out with a
message, and runs as Python beside the compiled others. REDQUORUM_NATIVE=0 skips the build (and the
loading, see proxy/__init__.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "proxy"
TARGET = SOURCE / "_native"
MANIFEST = "manifest.json"
GROUP = "redquorum._native"  # the shared library: redquorum/_native__mypyc.<suffix>
TIMEOUT = 1800  # seconds; a compile on a busy 2-core box takes one or two minutes

MODULES = [
    "protocol.resp",
    "replication.quorum",
    "replication.wire",
    "replication.clock",
    "replication.coordinator",
    "replication.counters",
    "server.clients",
    "server.reactor",
    "server.links",
    "commands.table",
    "commands.strings",
    "commands.dispatch",
]

SETUP = """\
from setuptools import setup
from mypyc.build import mypycify

setup(name="redquorum-native", ext_modules=mypycify(
    ["--follow-imports=silent", "--ignore-missing-imports", *{paths!r}],
    opt_level="3", group_name={group!r}))
"""


def say(message: str) -> None:
    print(f"build_native: {message}", file=sys.stderr)


def source_of(module: str) -> Path:
    return SOURCE.joinpath(*module.split(".")).with_suffix(".py")


def digest(module: str) -> str:
    return hashlib.sha256(source_of(module).read_bytes()).hexdigest()


def wanted_inputs() -> dict[str, object]:
    """What a build from the current sources starts from; a build is up to date while its
    manifest records the same."""
    import mypy.version

    return {
        "python": sys.implementation.cache_tag,
        "suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "mypy": mypy.version.__version__,
        "inputs": {m: digest(m) for m in MODULES},
    }


def current_manifest() -> dict[str, object] | None:
    try:
        return json.loads((TARGET / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def clean() -> None:
    shutil.rmtree(TARGET, ignore_errors=True)


def compile_into(work: Path, modules: list[str], log: Path) -> bool:
    """Run mypyc over ``modules`` of a copy of proxy/ named ``redquorum`` in ``work``."""
    shutil.rmtree(work / "redquorum", ignore_errors=True)
    shutil.rmtree(work / "build", ignore_errors=True)
    shutil.copytree(SOURCE, work / "redquorum",
                    ignore=shutil.ignore_patterns("__pycache__", "_native", "_native.new", "*.so"))
    paths = [f"redquorum/{m.replace('.', '/')}.py" for m in modules]
    (work / "setup.py").write_text(SETUP.format(paths=paths, group=GROUP))
    with log.open("w") as out:
        try:
            result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                                    cwd=work, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            out.write(f"\ntimed out after {TIMEOUT} s\n")
            return False
    return result.returncode == 0


def rejected(log_text: str, modules: list[str]) -> dict[str, str]:
    """The modules mypyc reported errors in, each with its first error line."""
    found: dict[str, str] = {}
    for line in log_text.splitlines():
        for module in modules:
            if line.startswith(f"redquorum/{module.replace('.', '/')}.py:") and ": error:" in line:
                found.setdefault(module, line)
    return found


def install(work: Path, manifest: dict[str, object]) -> int:
    """Move the extension modules into proxy/_native/ and write the manifest last."""
    suffix = str(manifest["suffix"])
    staging = TARGET.with_name("_native.new")
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    for built in (work / "redquorum").rglob(f"*{suffix}"):
        relative = built.relative_to(work / "redquorum")
        (staging / relative.parent).mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, staging / relative)
        count += 1
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    clean()
    staging.rename(TARGET)
    return count


def build(force: bool) -> bool:
    """Compile MODULES; a module mypyc rejects is left out (it runs as Python) and the
    others are compiled again without it, so one module's construct mypyc cannot
    compile does not cost the others their build."""
    try:
        inputs = wanted_inputs()
    except ImportError:
        say("mypy is not installed; the proxy runs as pure Python")
        clean()
        return False
    built = current_manifest()
    if not force and built is not None and {k: built.get(k) for k in inputs} == inputs:
        say(f"compiled modules are up to date in {TARGET.relative_to(ROOT)}")
        return True
    clean()  # a failed build must not leave an older one behind
    modules = list(MODULES)
    left_out: dict[str, str] = {}
    say(f"compiling {len(modules)} modules with mypyc (a minute or two)...")
    with tempfile.TemporaryDirectory(prefix="redquorum-native-") as tmp:
        work = Path(tmp)
        log = work / "build.log"
        while not compile_into(work, modules, log):
            text = log.read_text(errors="replace")
            errors = rejected(text, modules)
            if not errors or len(errors) == len(modules):
                tail = text.strip().splitlines()[-15:]
                say("mypyc build FAILED; the proxy runs as pure Python. The build's last "
                    "lines:\n  " + "\n  ".join(tail))
                return False
            for module, line in errors.items():
                say(f"left out {module}, which runs as Python: {line}")
            left_out.update(errors)
            modules = [m for m in modules if m not in errors]
            say(f"compiling the other {len(modules)} modules...")
        manifest = {**inputs, "sources": {m: digest(m) for m in modules},
                    "left_out": sorted(left_out)}
        count = install(work, manifest)
    say(f"compiled {len(modules)} modules ({count} extension files) into "
        f"{TARGET.relative_to(ROOT)}" + (f"; left out: {', '.join(sorted(left_out))}" if left_out else ""))
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="build even if up to date")
    parser.add_argument("--clean", action="store_true", help="remove the build (pure Python)")
    args = parser.parse_args()
    if args.clean:
        clean()
        say("removed the compiled modules; the proxy runs as pure Python")
        return 0
    if os.environ.get("REDQUORUM_NATIVE", "1") == "0":
        say("REDQUORUM_NATIVE=0: not compiling; the proxy runs as pure Python")
        return 0
    build(args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
