from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LeaseRequest(_message.Message):
    __slots__ = ("node_id", "incarnation", "region", "budgets", "rates")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    RATES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    incarnation: str
    region: str
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetAsk]
    rates: _containers.RepeatedCompositeFieldContainer[RateDemand]
    def __init__(self, node_id: _Optional[str] = ..., incarnation: _Optional[str] = ..., region: _Optional[str] = ..., budgets: _Optional[_Iterable[_Union[BudgetAsk, _Mapping]]] = ..., rates: _Optional[_Iterable[_Union[RateDemand, _Mapping]]] = ...) -> None: ...

class BudgetAsk(_message.Message):
    __slots__ = ("scope", "period", "spent_micros", "reserved_micros", "want_micros", "release", "spent_pico", "reserved_pico", "want_pico", "need_pico", "exceeded_refusals")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    WANT_MICROS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    SPENT_PICO_FIELD_NUMBER: _ClassVar[int]
    RESERVED_PICO_FIELD_NUMBER: _ClassVar[int]
    WANT_PICO_FIELD_NUMBER: _ClassVar[int]
    NEED_PICO_FIELD_NUMBER: _ClassVar[int]
    EXCEEDED_REFUSALS_FIELD_NUMBER: _ClassVar[int]
    scope: str
    period: str
    spent_micros: int
    reserved_micros: int
    want_micros: int
    release: bool
    spent_pico: str
    reserved_pico: str
    want_pico: str
    need_pico: str
    exceeded_refusals: int
    def __init__(self, scope: _Optional[str] = ..., period: _Optional[str] = ..., spent_micros: _Optional[int] = ..., reserved_micros: _Optional[int] = ..., want_micros: _Optional[int] = ..., release: _Optional[bool] = ..., spent_pico: _Optional[str] = ..., reserved_pico: _Optional[str] = ..., want_pico: _Optional[str] = ..., need_pico: _Optional[str] = ..., exceeded_refusals: _Optional[int] = ...) -> None: ...

class BudgetGrant(_message.Message):
    __slots__ = ("scope", "period", "limited", "granted_micros", "remaining_micros", "limit_micros", "spent_micros", "granted_pico", "remaining_pico", "limit_pico", "spent_pico", "ttl_s")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    LIMITED_FIELD_NUMBER: _ClassVar[int]
    GRANTED_MICROS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MICROS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICROS_FIELD_NUMBER: _ClassVar[int]
    GRANTED_PICO_FIELD_NUMBER: _ClassVar[int]
    REMAINING_PICO_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PICO_FIELD_NUMBER: _ClassVar[int]
    SPENT_PICO_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    scope: str
    period: str
    limited: bool
    granted_micros: int
    remaining_micros: int
    limit_micros: int
    spent_micros: int
    granted_pico: str
    remaining_pico: str
    limit_pico: str
    spent_pico: str
    ttl_s: float
    def __init__(self, scope: _Optional[str] = ..., period: _Optional[str] = ..., limited: _Optional[bool] = ..., granted_micros: _Optional[int] = ..., remaining_micros: _Optional[int] = ..., limit_micros: _Optional[int] = ..., spent_micros: _Optional[int] = ..., granted_pico: _Optional[str] = ..., remaining_pico: _Optional[str] = ..., limit_pico: _Optional[str] = ..., spent_pico: _Optional[str] = ..., ttl_s: _Optional[float] = ...) -> None: ...

class RateDemand(_message.Message):
    __slots__ = ("scope", "requests_per_s", "tokens_per_s", "refused")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    scope: str
    requests_per_s: float
    tokens_per_s: float
    refused: int
    def __init__(self, scope: _Optional[str] = ..., requests_per_s: _Optional[float] = ..., tokens_per_s: _Optional[float] = ..., refused: _Optional[int] = ...) -> None: ...

class RateShare(_message.Message):
    __slots__ = ("scope", "requests_fraction", "tokens_fraction")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FRACTION_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FRACTION_FIELD_NUMBER: _ClassVar[int]
    scope: str
    requests_fraction: float
    tokens_fraction: float
    def __init__(self, scope: _Optional[str] = ..., requests_fraction: _Optional[float] = ..., tokens_fraction: _Optional[float] = ...) -> None: ...

class LeaseResponse(_message.Message):
    __slots__ = ("budgets", "shares", "ttl_s")
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetGrant]
    shares: _containers.RepeatedCompositeFieldContainer[RateShare]
    ttl_s: float
    def __init__(self, budgets: _Optional[_Iterable[_Union[BudgetGrant, _Mapping]]] = ..., shares: _Optional[_Iterable[_Union[RateShare, _Mapping]]] = ..., ttl_s: _Optional[float] = ...) -> None: ...
