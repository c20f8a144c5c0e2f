"""redquorum: a Redis-protocol proxy over leaderless, quorum-replicated Redis servers.

Compiled modules
----------------
scripts/build_native.py may have compiled the per-request modules with mypyc into
``_native/`` beside this file, with a manifest of their sources' digests. They are
loaded from there, ahead of the Python sources, only when the build is for this
interpreter and every digest matches the source beside it: an edited module runs as
Python until the next build. All or none: compiled modules call each other directly, so
one stale module turns the whole build off. ``REDQUORUM_NATIVE=0`` turns it off too.
``NATIVE`` names the compiled modules in use; ``NATIVE_STATUS`` says which variant runs
and, for pure Python, why (``redquorum --version`` and INFO show it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from importlib.machinery import ExtensionFileLoader, ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType

__version__ = "0.1.0"

_GROUP_LIBRARY = "_native__mypyc"  # mypyc's shared library of the compiled modules


class _NativeFinder:
    """A meta path finder for the compiled modules (and their shared library) only."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        self.files = files

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        return spec_from_file_location(fullname, file, loader=ExtensionFileLoader(fullname, str(file)))


def native_build(build: Path, package: Path, environ: Mapping[str, str] = os.environ
                 ) -> tuple[dict[str, Path], str]:
    """The extension file of each compiled module (by module name under ``redquorum``) of
    the build in ``build`` that matches the sources in ``package``, and a status line;
    no files when it does not match or is turned off."""
    if environ.get("REDQUORUM_NATIVE", "1") == "0":
        return {}, "pure Python: REDQUORUM_NATIVE=0"
    try:
        manifest = json.loads((build / "manifest.json").read_text())
        sources = dict(manifest["sources"])
        suffix = str(manifest["suffix"])
    except OSError:
        return {}, "pure Python: no compiled build (scripts/build_native.py makes one)"
    except (ValueError, KeyError, TypeError):
        return {}, "pure Python: the compiled build's manifest is unreadable"
    if suffix != sysconfig.get_config_var("EXT_SUFFIX"):
        return {}, "pure Python: compiled for another Python"
    files = {f"redquorum.{_GROUP_LIBRARY}": build / (_GROUP_LIBRARY + suffix)}
    for module, digest in sorted(sources.items()):
        parts = module.split(".")
        try:
            current = hashlib.sha256(package.joinpath(*parts).with_suffix(".py").read_bytes()).hexdigest()
        except OSError:
            current = None
        if current != digest:
            return {}, f"pure Python: the compiled build is older than {module}: rebuild it"
        files[f"redquorum.{module}"] = build.joinpath(*parts[:-1], parts[-1] + suffix)
    missing = [name for name, file in files.items() if not file.is_file()]
    if missing:
        return {}, f"pure Python: the compiled build lacks {missing[0]}"
    return files, f"compiled with mypyc: {len(sources)} modules"


def _load_native() -> tuple[tuple[str, ...], str]:
    here = Path(__file__).resolve().parent
    files, status = native_build(here / "_native", here)
    if files:
        sys.meta_path.insert(0, _NativeFinder(files))
    names = tuple(sorted(n.removeprefix("redquorum.") for n in files if not n.endswith(_GROUP_LIBRARY)))
    return names, status


NATIVE, NATIVE_STATUS = _load_native()
