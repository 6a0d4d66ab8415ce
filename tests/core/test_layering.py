"""The layering rule, written once: which packages may import what, read from the code (AST), and no import cycles.

- The pure core (the data plane's ``snapshot`` and ``core`` packages, the ``translate`` package, the policy
  compiler and resources, the pure modules of ``tollway``) imports no asyncio, aiohttp, grpc, duckdb or aetcd: it
  is a function of its arguments, testable without an event loop, a socket or a process.
- grpc appears only at process boundaries: the data plane's ``sync`` package, the control plane's ``push``,
  ``money`` and ``usage`` services, the etcd backend, the servers' wiring and the generated stubs.
- The data plane's packages depend downwards along the request path: ``snapshot`` ← ``core`` ← ``upstream`` ←
  ``api``; ``translate`` sits beside ``core``; ``record`` and ``sync`` never reach into ``api``.
- No runtime import cycle between two modules of the project (imports under ``TYPE_CHECKING`` don't count).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.pure

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dataplane", "controlplane", "tollway", "cli")

# (module prefix, banned import prefixes, why)
PURE = ("asyncio", "aiohttp", "grpc", "duckdb", "aetcd", "uvloop")
RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("dataplane.snapshot.runtime", PURE, "the runtime form is built by a pure function of the snapshot"),
    ("dataplane.snapshot.holder", PURE, "preparing and adopting a snapshot is pure; the caller picks the thread"),
    ("dataplane.core", PURE, "the request decision is pure over the runtime, the counters and the clock"),
    ("dataplane.translate", PURE, "translations between dialects and the hub format are pure functions"),
    ("controlplane.policy.compile", PURE, "compiling policy is a pure function (apply --dry-run, diff, publish)"),
    ("controlplane.policy.resources", PURE, "policy resources are pydantic models of what users write"),
    ("controlplane.policy.engine", PURE, "planning an apply is pure; the repository is its I/O shell"),
    ("controlplane.policy.plan", PURE, "planning what data planes would receive is pure (gatectl plan)"),
    ("controlplane.policy.snapshot_facts", PURE, "a snapshot's facts are a pure function of the snapshot"),
    ("tollway.budget_scopes", PURE, "budget scopes are shared pure definitions"),
    ("controlplane.replay", PURE, "a replay is a pure function of recorded facts and two snapshots"),
    ("tollway.keyformat", PURE, "key formats are shared pure definitions"),
    # Downward dependencies along the request path.
    ("dataplane.snapshot", ("dataplane.core", "dataplane.upstream", "dataplane.api", "dataplane.record",
                            "dataplane.sync"), "the snapshot's runtime form knows nothing of the request path"),
    ("dataplane.core", ("dataplane.upstream", "dataplane.api", "dataplane.record", "dataplane.sync"),
     "the pure core decides; it never calls the I/O around it"),
    ("dataplane.translate", ("dataplane.upstream", "dataplane.api", "dataplane.record", "dataplane.sync"),
     "translations are pure functions the API and the adapters call"),
    ("dataplane.upstream", ("dataplane.api", "dataplane.record", "dataplane.sync"),
     "the upstream side attempts a plan; answering the client is the API's"),
    ("dataplane.record", ("dataplane.api", "dataplane.sync", "dataplane.upstream"),
     "recording is fed outcomes; it does not reach back into serving"),
    ("dataplane.sync", ("dataplane.api",), "background sync with the control plane never calls the handlers"),
    ("dataplane", ("controlplane", "cli"), "a data plane needs nothing of the control plane but the protos"),
    ("controlplane", ("dataplane", "cli"), "the control plane shares only tollway/ with the data plane"),
    ("controlplane.replay", ("dataplane.api", "dataplane.upstream", "dataplane.record", "dataplane.sync",
                             "dataplane.serve", "dataplane.settings", "dataplane.workers"),
     "a replay runs the data plane's pure decision core, nothing around it"),
    ("tollway", ("dataplane", "controlplane", "cli"), "tollway/ holds what both planes share"),
    ("controlplane.store.base", ("controlplane.store.etcd", "controlplane.store.embedded"),
     "the store contract does not know its backends (controlplane.store.open picks one)"),
]
GRPC_ALLOWED = (
    "dataplane.sync", "dataplane.serve", "controlplane.push", "controlplane.money.lease_service",
    "controlplane.usage.service", "controlplane.grpc_auth", "controlplane.store.etcd", "controlplane.server",
    "tollway.pb", "tollway.grpc_options",
)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports (a module, or a module's attribute)
    line: int
    runtime: bool  # False under ``if TYPE_CHECKING:``


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> Iterator[Import]:
    module = module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))

    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            typing_only.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    for node in ast.walk(tree):  # imports inside functions count: they run too
        runtime = id(node) not in typing_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, runtime)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}" if base else alias.name, node.lineno, runtime)


def project_files() -> list[Path]:
    out: list[Path] = []
    for package in PACKAGES:
        out.extend(p for p in sorted((ROOT / package).rglob("*.py")) if "pb" not in p.relative_to(ROOT).parts[1:2])
    return out


ALL_IMPORTS = [imp for path in project_files() for imp in imports_of(path)]
MODULES = {module_name(p) for p in project_files()}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def resolve(target: str) -> str | None:
    """The project module an import names (``pkg.mod.attr`` → ``pkg.mod``), or None for foreign code."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


# (module prefix, imports it may make despite a broader rule, why): the replay shares the data plane's pure core,
# so that replay and data plane run one decision (``controlplane.replay``).
EXCEPTIONS: list[tuple[str, tuple[str, ...], str]] = [
    ("controlplane.replay", ("dataplane.core", "dataplane.snapshot", "dataplane.errors"),
     "the replay runs the data plane's own pure decision core"),
]


def _excepted(imp: Import) -> bool:
    return any(_within(imp.module, prefix) and any(_within(imp.target, a) for a in allowed)
               for prefix, allowed, _ in EXCEPTIONS)


def test_the_pure_core_and_the_layers_import_only_what_their_rule_allows() -> None:
    broken = []
    for imp in ALL_IMPORTS:
        if not imp.runtime or _excepted(imp):
            continue
        for prefix, banned, why in RULES:
            if _within(imp.module, prefix) and any(_within(imp.target, b) for b in banned):
                broken.append(f"{imp.module} (line {imp.line}) imports {imp.target}: {why}")
    assert not broken, "layering broken:\n" + "\n".join(broken)


def test_grpc_appears_only_at_process_boundaries() -> None:
    broken = [f"{imp.module} (line {imp.line}) imports {imp.target}: grpc belongs at process boundaries "
              f"({', '.join(GRPC_ALLOWED)})"
              for imp in ALL_IMPORTS
              if imp.runtime and _within(imp.target, "grpc") and not any(_within(imp.module, a) for a in GRPC_ALLOWED)]
    assert not broken, "\n".join(broken)


def test_no_module_of_the_project_imports_itself_back_at_runtime() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    lines: dict[tuple[str, str], int] = {}
    for imp in ALL_IMPORTS:
        target = resolve(imp.target)
        if imp.runtime and target is not None and target != imp.module:
            # ``from pkg import mod`` loads pkg/__init__ too, but a package importing its own modules is how a
            # package exposes them, not a cycle of concepts: count the edge to the module named.
            graph[imp.module].add(target)
            lines.setdefault((imp.module, target), imp.line)
    cycles = _cycles(graph)
    described = [" -> ".join(f"{a} (line {lines[(a, b)]})" for a, b in zip(c, [*c[1:], c[0]], strict=True))
                 + f" -> {c[0]}" for c in cycles]
    assert not cycles, "runtime import cycles (cut one edge, or move what both need to a third module):\n" + \
        "\n".join(described)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_path_through(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One cycle inside a strongly connected component, for the message."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = sorted(graph[path[-1]] & component)
        back = [n for n in nxt if n == start]
        if back and len(path) > 1:
            return path
        step = next((n for n in nxt if n not in seen), None)
        if step is None:
            return path
        path.append(step)
        seen.add(step)


def test_the_rule_sees_imports_at_all() -> None:
    # A walker that found nothing would pass every rule above: make sure it reads the real tree.
    assert len(MODULES) > 80
    assert any(imp.module == "dataplane.api.app" and imp.target.startswith("aiohttp") for imp in ALL_IMPORTS)
