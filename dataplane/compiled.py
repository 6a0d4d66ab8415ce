"""The request path's modules compiled to C by mypyc, and the import hook that loads them while they match their
sources.

``python -m dataplane.compile`` (``scripts/setup.sh`` runs it) compiles ``MODULES`` as one group: the request path
from the fast path's whole request to the usage record, the upstream client and the attempt. Calls
between them become C calls, their classes native ones (attributes in C slots, checked types); everything they call
outside the group (asyncio, aiohttp, orjson, protobuf) is called as before. The build goes to
``dataplane/_compiled/`` (next to the sources, wherever they are installed) with a manifest of the sources it was
made from; the sources stay where they are, as they are.

On import of ``dataplane`` (``install``), the compiled modules are used only when every module of ``dataplane`` and
``tollway`` (``DEPENDS``) matches the source it was built from (the hashes of the manifest), for this interpreter: a
module edited, added or removed since the build, or a build for another Python, means the whole group runs from
source (with one warning), never part of it — a compiled module calls its group's native classes, and a class
defined twice, once compiled and once from source, would be two classes. Not
compiled: code a thread runs over large inputs (the snapshot's runtime tables, ``snapshot.key_table`` and
``snapshot.runtime``, built off the loop ``_STEP`` keys at a time): compiled code never lets the GIL go between
bytecodes as the interpreter does, so the loop would wait for the whole build. The classes those tables hold
(``snapshot.catalog``, ``snapshot.tenancy``) are compiled: the interpreted builder makes native objects, which
the request path reads as slots. ``TOLLWAY_COMPILED=0`` runs
everything from source (profiles then show the modules' functions; in the compiled group they are C). Without a C
compiler the build fails and the data plane runs from source: the same code, slower (``bench/HISTORY.md`` has what
the build bought).

What mypyc asks of the sources (pinned by the tests running the compiled group): no ``slots=True`` dataclasses (a native
class has slots of its own), no class attribute aliasing a method (``__str__ = __repr__``), no async generators; a
native class can only subclass a native class, ``object`` or a handful of built-ins, and is subclassed only by compiled
code unless it says otherwise (``mypyc_attr(allow_interpreted_subclasses=True)``, as ``Records`` does for the tests that
capture outcomes; a ``list`` subclass such as ``LastBatch`` says ``native_class=False``); what the request path makes
per request has a written ``__init__`` (a value class: ``@dataclass(unsafe_hash=True)`` with ``Final`` fields,
``tests/core/test_values.py``; what it changes, such as ``Reservation``, a plain one), which mypyc compiles with the
class, native in the group's modules; an attribute tested against ``None`` and read again after an ``await`` is read
through a method (mypy keeps the narrowing across the ``await``, and the compiled code checks the type it was narrowed
to: ``upstream.connection``).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]  # the directory holding ``dataplane`` (a checkout, or site-packages)
BUILD = Path(__file__).resolve().parent / "_compiled"
MANIFEST = BUILD / "manifest.json"
GROUP = "tollway_hot"
# The packages a build depends on, all of them: compiled code trusts the types of what it imports (a field of
# ``snapshot.runtime`` read as an ``int``, say), so a change anywhere in them, not only in ``MODULES``, retires it.
DEPENDS = ("dataplane", "tollway")
ENV = "TOLLWAY_COMPILED"

MODULES = (
    "tollway.money",
    "dataplane.errors",
    "dataplane.outbox",
    "dataplane.snapshot.catalog",
    "dataplane.snapshot.tenancy",
    "dataplane.core.accounting",
    "dataplane.core.attribution",
    "dataplane.core.content",
    "dataplane.core.cost_bound",
    "dataplane.core.decide",
    "dataplane.core.gate",
    "dataplane.core.health",
    "dataplane.core.limits.budget",
    "dataplane.core.limits.limits_gate",
    "dataplane.core.limits.rate_table",
    "dataplane.core.limits.ratelimit",
    "dataplane.core.limits.reset_text",
    "dataplane.core.validate",
    "dataplane.record.metrics",
    "dataplane.record.records",
    "dataplane.record.request_log",
    "dataplane.record.spool",
    "dataplane.record.usage_batch",
    "dataplane.record.usage_record",
    "dataplane.api.appstate",
    "dataplane.api.connection.overload",
    "dataplane.api.connection.whole_request",
    "dataplane.api.openai",
    "dataplane.api.pipeline",
    "dataplane.api.streaming",
    "dataplane.upstream.adapters.openai",
    "dataplane.upstream.adapters.reply",
    "dataplane.upstream.adapters.wire",
    "dataplane.upstream.alarms",
    "dataplane.upstream.attempt",
    "dataplane.upstream.client",
    "dataplane.upstream.connection",
    "dataplane.upstream.deadline",
    "dataplane.upstream.sse",
)


def source(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def abi() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def sources() -> dict[str, str]:
    """Every module of ``DEPENDS`` by path (relative to ``ROOT``) with its digest: what a build was made from."""
    found = sorted(p for package in DEPENDS for p in (ROOT / package).rglob("*.py") if BUILD not in p.parents)
    return {str(p.relative_to(ROOT)): digest(p) for p in found}


def usable(manifest_path: Path = MANIFEST) -> dict[str, Path] | str:
    """The compiled group's files by module name (the group's shared library included), or why it cannot be
    used (no build, a build for another Python, a source edited, added or removed since)."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        return "not built"
    except (OSError, ValueError) as e:
        return f"unreadable manifest {manifest_path}: {e}"
    if manifest.get("abi") != abi():
        return f"built for {manifest.get('abi')}, this Python loads {abi()}"
    if manifest.get("modules") != list(MODULES):
        return "built for another list of modules"
    try:
        now = sources()
    except OSError as e:
        return f"cannot read the sources: {e}"
    built: dict[str, str] = manifest.get("sources", {})
    if now != built:
        path = next(p for p in sorted(now.keys() | built.keys()) if now.get(p) != built.get(p))
        return f"{path} {'changed' if path in now and path in built else 'appeared' if path in now else 'went'} " \
               "since the build"
    files = {name: manifest_path.parent / rel for name, rel in manifest["files"].items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    return f"missing {', '.join(missing)}" if missing else files


class _Finder(MetaPathFinder):
    """Finds the compiled group's modules (and its shared library) in the build, ahead of the sources."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._files = files

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> ModuleSpec | None:
        file = self._files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def install() -> bool:
    """Load the compiled group from now on, if it is usable; whether it is. Called once, by ``dataplane``'s
    ``__init__``, before any of its modules is imported."""
    if os.environ.get(ENV, "1") == "0" or active():
        return False
    if sys.orig_argv[1:3] == ["-m", "dataplane.compile"]:  # the build itself: it says what it does
        return False
    files = usable()
    if isinstance(files, str):
        if files != "not built":
            log.warning("the data plane's compiled modules are not used (%s): running from source; "
                        "rebuild with `python -m dataplane.compile`", files)
        return False
    sys.meta_path.insert(0, _Finder(files))
    return True


def active() -> bool:
    """Whether this process runs the compiled group."""
    return any(isinstance(f, _Finder) for f in sys.meta_path)
