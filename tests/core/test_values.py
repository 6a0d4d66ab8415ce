"""The value classes: what the request path makes per request, written so mypyc compiles it.

Such a class is a ``@dataclass(unsafe_hash=True)`` whose fields are ``Final`` and whose ``__init__`` is written out,
assigning each field from the parameter of its name, in the fields' order (a list defaulting to empty takes
``None``). In the compiled group's modules (``dataplane/compiled.py``) mypyc makes it a native class (its fields
are C slots, read by compiled code without a lookup) and compiles the written ``__init__`` (a dataclass's generated
one would run interpreted: 265 ns against 33 ns for eight fields, measured compiled); elsewhere, and from source,
it is a plain class (with a ``__dict__``: ``slots=True`` is what mypyc refuses). ``dataclass`` still gives it a
frozen dataclass's ``__eq__``, ``__hash__``, ``repr`` and ``replace``, and ``Final`` makes assigning a field
anywhere else a type error the test command's mypy reports; a field that needs ``field()`` (``Complete.parsed``,
left out of comparisons) cannot be ``Final``. A per-request object that changes (``Reservation``) is a plain
dataclass with a written ``__init__``, held to the same check. These tests pin the convention, since
nothing else checks that an ``__init__`` and its fields agree.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from mypy import api

from dataplane.core.accounting import Usage
from tollway.budget_scopes import BudgetLimit, BudgetScope

ROOT = Path(__file__).resolve().parents[2]


def _value_classes() -> Iterator[tuple[str, ast.ClassDef]]:
    for path in sorted([*(ROOT / "dataplane").rglob("*.py"), *(ROOT / "tollway").rglob("*.py")]):
        if "_compiled" in path.parts or "pb" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            decorators = [ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list] \
                if isinstance(node, ast.ClassDef) else []
            written = isinstance(node, ast.ClassDef) and any(
                isinstance(s, ast.FunctionDef) and s.name == "__init__" for s in node.body)
            if "dataclass" in decorators and (written or _final_fields(node)):
                assert isinstance(node, ast.ClassDef)
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node


def _final_fields(node: ast.AST) -> list[str]:
    return [s.target.id for s in getattr(node, "body", []) if isinstance(s, ast.AnnAssign)
            and isinstance(s.target, ast.Name) and ast.unparse(s.annotation).startswith("Final[")]


def _problems(node: ast.ClassDef) -> list[str]:
    fields = {s.target.id: s for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    init = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
    if init is None:
        return ["Final fields and no written __init__ (dataclass would generate an interpreted one)"]
    params = init.args.args[1:]
    problems = []
    value_class = any(isinstance(d, ast.Call) and any(k.arg == "unsafe_hash" for k in d.keywords)
                 for d in node.decorator_list)
    if value_class:  # every field Final but those that need ``field()``
        problems += [f"{name} is not Final" for name, f in fields.items() if name not in _final_fields(node)
                     and not (isinstance(f.value, ast.Call) and ast.unparse(f.value.func) == "field")]
    if [p.arg for p in params] != list(fields):
        problems.append(f"__init__ takes {[p.arg for p in params]}, the fields are {list(fields)}")
    for param in params:
        field = fields.get(param.arg)
        if field is None or param.annotation is None:
            continue
        declared = ast.unparse(field.annotation)
        declared = declared[len("Final["):-1] if declared.startswith("Final[") else declared
        if ast.unparse(param.annotation) not in (declared, f"{declared} | None"):
            problems.append(f"{param.arg} is {ast.unparse(param.annotation)} in __init__, {declared} as a field")
    assigned = []
    for stmt in init.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
        if not (isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self"):
            problems.append(f"__init__ does more than assign its fields: {ast.unparse(stmt)}")
            continue
        assert isinstance(stmt, ast.Assign)
        if ast.unparse(stmt.value) not in (target.attr, f"{target.attr} if {target.attr} is not None else []"):
            problems.append(f"self.{target.attr} is assigned {ast.unparse(stmt.value)}")
        assigned.append(target.attr)
    if assigned != list(fields):
        problems.append(f"__init__ assigns {assigned}, the fields are {list(fields)}")
    return problems


@pytest.mark.pure
def test_each_value_class_assigns_every_field_from_the_parameter_of_its_name() -> None:
    classes = dict(_value_classes())
    assert {"Usage", "RoutePlan", "BudgetScope", "Complete", "Reservation"} <= {
        where.split()[-1] for where in classes}  # the scan finds them, mutable ones too
    problems = {where: p for where, node in classes.items() if (p := _problems(node))}
    assert problems == {}


@pytest.mark.pure
def test_the_check_catches_an_init_that_forgets_or_swaps_a_field() -> None:
    source = ("@dataclass(unsafe_hash=True)\nclass P:\n    a: Final[int]\n    b: Final[str]\n\n"
              "    def __init__(self, a: int, b: str) -> None:\n        self.a = a\n")
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.ClassDef)
    assert _problems(node) == ["__init__ assigns ['a'], the fields are ['a', 'b']"]
    swapped = source.replace("        self.a = a\n", "        self.a = b\n        self.b = a\n")
    node = ast.parse(swapped).body[0]
    assert isinstance(node, ast.ClassDef)
    assert _problems(node) == ["self.a is assigned b", "self.b is assigned a"]
    plain = source.replace("    b: Final[str]\n", "    b: str\n").replace("        self.a = a\n",
                                                                            "        self.a = a\n        self.b = b\n")
    node = ast.parse(plain).body[0]
    assert isinstance(node, ast.ClassDef)
    assert _problems(node) == ["b is not Final"]
    generated = "@dataclass(unsafe_hash=True)\nclass P:\n    a: Final[int]\n"
    node = ast.parse(generated).body[0]
    assert isinstance(node, ast.ClassDef) and _final_fields(node) == ["a"]
    assert _problems(node) == ["Final fields and no written __init__ (dataclass would generate an interpreted one)"]


@pytest.mark.pure
def test_values_compare_and_hash_by_their_fields() -> None:
    assert Usage(1, 2) == Usage(1, 2) and Usage(1, 2) != Usage(1, 3)
    assert {Usage(1, 2): "a"}[Usage(1, 2)] == "a"  # a dict key, as a frozen dataclass is
    assert repr(Usage(1)) == ("Usage(prompt_tokens=1, completion_tokens=0, cached_tokens=0, source='upstream', "
                              "cache_write_tokens=0, cache_write_1h_tokens=0, reasoning_tokens=0)")
    assert dataclasses.replace(Usage(1, 2), completion_tokens=5) == Usage(1, 5)
    assert [f.name for f in dataclasses.fields(Usage)][:3] == ["prompt_tokens", "completion_tokens", "cached_tokens"]
    limit = BudgetLimit(100_000_000, 80, 0)
    scopes = {BudgetScope("key", "key/k1", limit): 1}
    assert scopes[BudgetScope("key", "key/k1", limit)] == 1


def test_assigning_a_field_of_a_value_is_a_type_error(tmp_path: Path) -> None:
    snippet = tmp_path / "assigns.py"
    snippet.write_text("from dataclasses import dataclass\nfrom typing import Final\n\n\n"
                       "@dataclass(unsafe_hash=True)\nclass P:\n    a: Final[int]\n\n"
                       "    def __init__(self, a: int) -> None:\n        self.a = a\n\n\n"
                       "p = P(1)\np.a = 2\nP(\"one\")\n")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n")
    out, err, status = api.run(["--config-file", str(config), "--no-incremental", "--python-version", "3.11",
                                str(snippet)])
    assert status == 1, out + err
    assert 'assigns.py:14: error: Cannot assign to final attribute "a"' in out
    assert "assigns.py:15: error: Argument 1 to \"P\" has incompatible type \"str\"; expected \"int\"" in out
