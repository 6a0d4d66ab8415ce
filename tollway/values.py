"""``@value``: the class of what the request path makes per request, frozen to the type checker, plain at run time.

A ``@dataclass(frozen=True)``'s ``__init__`` sets every field through ``object.__setattr__``: about 80 ns a field,
nine times a plain slotted dataclass's for 14 fields. The request path makes some twenty such objects per request
(the validated request, its plan, admission, usage, outcome, the attempt's answer, the log entry...), and their
constructors were 6-7 % of the data plane's CPU at saturation (py-spy). ``@value`` declares a class as frozen to
mypy (``frozen_default``: assigning a field is a type error, and the test command type-checks) and makes a plain
slotted dataclass at run time, with the same ``__eq__``, ``__hash__`` and ``repr`` a frozen one has.

Use it only for objects made per request and never changed; what is built once (a snapshot's runtime, settings,
constants) stays ``@dataclass(frozen=True, slots=True)``, immutable at run time too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
