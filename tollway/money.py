"""Money, exactly: integer pico-dollars (1e-12 USD), the unit both planes keep spend in.

Catalog prices are micro-dollars per million tokens, which is the same number as pico-dollars per token, so a
request's cost is the sum over token kinds of tokens times price, with no rounding at all, and the sum of
per-request costs equals the sum of tokens times prices for any number of requests. Budgets are declared in
micro-dollars (exact in pico). Python integers do not overflow; where a value leaves Python it goes in an
arbitrary-precision form (decimal strings on the lease wire and in ledger documents, HUGEINT in DuckDB), unless
it is one request's cost, which fits int64 (it would have to exceed $9.2M).

Display (headers, tables) may round; ``usd`` is exact.
"""

from __future__ import annotations

from typing import Final

PICO_PER_MICRO: Final = 1_000_000
PICO_PER_USD: Final = 1_000_000_000_000


def pico_of_micros(micros: int) -> int:
    return micros * PICO_PER_MICRO


def micros_rounded(pico: int) -> int:
    """For display and for readers of the older micro-dollar fields: to the nearest micro-dollar, half up."""
    return (pico + PICO_PER_MICRO // 2) // PICO_PER_MICRO


def micros_floor(pico: int) -> int:
    """What an older reader may spend of a pico amount without exceeding it."""
    return pico // PICO_PER_MICRO


def micros_ceil(pico: int) -> int:
    """What an older reader must count of a pico amount so as never to under-count it."""
    return -(-pico // PICO_PER_MICRO)


def usd(pico: int) -> str:
    """The exact decimal amount in USD, without trailing zeros beyond cents (``0.000012345``, ``12.50``)."""
    sign = "-" if pico < 0 else ""
    whole, frac = divmod(abs(pico), PICO_PER_USD)
    return f"{sign}{whole}.{f'{frac:012d}'.rstrip('0').ljust(2, '0')}"


def pico_text(pico: int) -> str:
    """A pico amount on a wire that must not overflow (proto ``string`` fields, JSON documents)."""
    return str(pico)


def parse_pico(text: str, micros: int = 0) -> int:
    """A pico amount from its text form; an empty text (a sender of an older version) falls back to ``micros``."""
    return int(text) if text else pico_of_micros(micros)


def record_cost_pico(cost_pico: int, cost_micros: int) -> int:
    """A usage record's exact cost: ``cost_pico``, or ``cost_micros`` x 1e6 for a record written before it."""
    return cost_pico if cost_pico or not cost_micros else pico_of_micros(cost_micros)
