"""Nautilus enums with Nautilus spellings.

Data and events carry enums as *names* (``"BUY"``); execution reports carry them as *ints*
(``1``), exactly as Nautilus's ``to_dict`` does (nautilus-model.md §2.3, §4.4). The ``*Code``
IntEnums exist for the reports, with the same member names so code reads the same either way.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class OrderSide(StrEnum):
    NO_ORDER_SIDE = "NO_ORDER_SIDE"
    BUY = "BUY"
    SELL = "SELL"


class AggressorSide(StrEnum):
    NO_AGGRESSOR = "NO_AGGRESSOR"
    BUYER = "BUYER"
    SELLER = "SELLER"


class BookAction(StrEnum):
    ADD = "ADD"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    CLEAR = "CLEAR"


class RecordFlag:
    """Bit flags of ``OrderBookDelta.flags`` (u8)."""

    F_LAST = 128
    F_TOB = 64
    F_SNAPSHOT = 32
    F_MBP = 16


class MarketStatusAction(StrEnum):
    NONE = "NONE"
    PRE_OPEN = "PRE_OPEN"
    PRE_CROSS = "PRE_CROSS"
    QUOTING = "QUOTING"
    CROSS = "CROSS"
    ROTATION = "ROTATION"
    NEW_PRICE_INDICATION = "NEW_PRICE_INDICATION"
    TRADING = "TRADING"
    HALT = "HALT"
    PAUSE = "PAUSE"
    SUSPEND = "SUSPEND"
    PRE_CLOSE = "PRE_CLOSE"
    CLOSE = "CLOSE"
    POST_CLOSE = "POST_CLOSE"
    SHORT_SELL_RESTRICTION_CHANGE = "SHORT_SELL_RESTRICTION_CHANGE"
    NOT_AVAILABLE_FOR_TRADING = "NOT_AVAILABLE_FOR_TRADING"


class InstrumentCloseType(StrEnum):
    END_OF_SESSION = "END_OF_SESSION"
    CONTRACT_EXPIRED = "CONTRACT_EXPIRED"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"
    STOP_LIMIT = "STOP_LIMIT"
    MARKET_TO_LIMIT = "MARKET_TO_LIMIT"
    MARKET_IF_TOUCHED = "MARKET_IF_TOUCHED"
    LIMIT_IF_TOUCHED = "LIMIT_IF_TOUCHED"
    TRAILING_STOP_MARKET = "TRAILING_STOP_MARKET"
    TRAILING_STOP_LIMIT = "TRAILING_STOP_LIMIT"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"
    DAY = "DAY"
    AT_THE_OPEN = "AT_THE_OPEN"
    AT_THE_CLOSE = "AT_THE_CLOSE"


class TriggerType(StrEnum):
    NO_TRIGGER = "NO_TRIGGER"
    DEFAULT = "DEFAULT"
    LAST_PRICE = "LAST_PRICE"
    MARK_PRICE = "MARK_PRICE"
    INDEX_PRICE = "INDEX_PRICE"
    BID_ASK = "BID_ASK"
    DOUBLE_LAST = "DOUBLE_LAST"
    DOUBLE_BID_ASK = "DOUBLE_BID_ASK"
    LAST_OR_BID_ASK = "LAST_OR_BID_ASK"
    MID_POINT = "MID_POINT"


class ContingencyType(StrEnum):
    NO_CONTINGENCY = "NO_CONTINGENCY"
    OCO = "OCO"
    OTO = "OTO"
    OUO = "OUO"


class LiquiditySide(StrEnum):
    NO_LIQUIDITY_SIDE = "NO_LIQUIDITY_SIDE"
    MAKER = "MAKER"
    TAKER = "TAKER"


class AccountType(StrEnum):
    CASH = "CASH"
    MARGIN = "MARGIN"
    BETTING = "BETTING"


# --- int-coded enums used by execution reports -------------------------------------------------


class OrderSideCode(IntEnum):
    NO_ORDER_SIDE = 0
    BUY = 1
    SELL = 2


class OrderTypeCode(IntEnum):
    MARKET = 1
    LIMIT = 2
    STOP_MARKET = 3
    STOP_LIMIT = 4
    MARKET_TO_LIMIT = 5
    MARKET_IF_TOUCHED = 6
    LIMIT_IF_TOUCHED = 7
    TRAILING_STOP_MARKET = 8
    TRAILING_STOP_LIMIT = 9


class TimeInForceCode(IntEnum):
    GTC = 1
    IOC = 2
    FOK = 3
    GTD = 4
    DAY = 5
    AT_THE_OPEN = 6
    AT_THE_CLOSE = 7


class OrderStatusCode(IntEnum):
    INITIALIZED = 1
    DENIED = 2
    EMULATED = 3
    RELEASED = 4
    SUBMITTED = 5
    ACCEPTED = 6
    REJECTED = 7
    CANCELED = 8
    EXPIRED = 9
    TRIGGERED = 10
    PENDING_UPDATE = 11
    PENDING_CANCEL = 12
    PARTIALLY_FILLED = 13
    FILLED = 14


class LiquiditySideCode(IntEnum):
    NO_LIQUIDITY_SIDE = 0
    MAKER = 1
    TAKER = 2


class PositionSideCode(IntEnum):
    NO_POSITION_SIDE = 0
    FLAT = 1
    LONG = 2
    SHORT = 3


class TriggerTypeCode(IntEnum):
    NO_TRIGGER = 0
    DEFAULT = 1
    LAST_PRICE = 2
    MARK_PRICE = 3
    INDEX_PRICE = 4
    BID_ASK = 5
    DOUBLE_LAST = 6
    DOUBLE_BID_ASK = 7
    LAST_OR_BID_ASK = 8
    MID_POINT = 9


class ContingencyTypeCode(IntEnum):
    NO_CONTINGENCY = 0
    OCO = 1
    OTO = 2
    OUO = 3


class TrailingOffsetTypeCode(IntEnum):
    NO_TRAILING_OFFSET = 0
    PRICE = 1
    BASIS_POINTS = 2
    TICKS = 3
    PRICE_TIER = 4
