"""``tollway.values.value``: what the request path makes per request behaves as a frozen dataclass does (equal and
hashed by its fields, ``replace`` makes a new one), and assigning a field is a type error the test command's mypy
reports; only the run-time check is gone (it cost 80 ns a field per object)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mypy import api

from tollway.budget_scopes import BudgetLimit, BudgetScope
from tollway.values import value

ROOT = Path(__file__).resolve().parents[2]


@value
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = dataclasses.field(default=())


@pytest.mark.pure
def test_values_compare_and_hash_by_their_fields() -> None:
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(1, 3)
    assert {Point(1, 2): "a"}[Point(1, 2)] == "a"  # a dict key, as a frozen dataclass is
    assert repr(Point(1)) == "Point(x=1, y=0, tags=())"
    moved = dataclasses.replace(Point(1, 2), y=5)
    assert moved == Point(1, 5)
    assert [f.name for f in dataclasses.fields(Point)] == ["x", "y", "tags"]
    assert not hasattr(Point(1), "__dict__")  # slotted: no attribute can be added by mistake either
    limit = BudgetLimit(100_000_000, 80, 0)
    scopes = {BudgetScope("key", "key/k1", limit): 1}
    assert scopes[BudgetScope("key", "key/k1", limit)] == 1


def test_assigning_a_field_of_a_value_is_a_type_error(tmp_path: Path) -> None:
    snippet = tmp_path / "assigns.py"
    snippet.write_text("from tollway.values import value\n\n\n@value\nclass P:\n    a: int\n\n\n"
                       "p = P(1)\np.a = 2\nP(\"one\")\n")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n")
    out, err, status = api.run(["--config-file", str(config), "--no-incremental", "--python-version", "3.11",
                                str(snippet)])
    assert status == 1, out + err
    assert 'assigns.py:10: error: Property "a" defined in "P" is read-only' in out
    assert "assigns.py:11: error: Argument 1 to \"P\" has incompatible type \"str\"; expected \"int\"" in out
