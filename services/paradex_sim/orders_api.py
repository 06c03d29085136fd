"""Order requests as the venue receives them (paradex-api.md §4.7, §5.8), shared by REST and the
WS ``order.*`` methods: parsing and basic validation, ``recv_window``, the STARK signature over
the request's own fields (§6.2.1/§6.2.2), system-state gates, then hand-off to the engine.

What is checked synchronously (400 before anything is queued): shape and enums, market exists,
tick/step/max size, ``recv_window``, signature, duplicate ``client_id``, ``max_open_orders``, and
-- only in ``risk_reject_mode="sync"`` -- price band and min notional. Everything else (margin,
position limit, reduce-only, and by default band/notional) is an async ``CLOSED`` + reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.paradex import signing
from services.paradex_sim.accounts import Account
from services.paradex_sim.config import SimConfig
from services.paradex_sim.engine import Exchange, band_violation
from services.paradex_sim.errors import ApiError, bad_request, validation
from services.paradex_sim.models import (
    CLOSED,
    FLAGS,
    INSTRUCTIONS,
    MARKET_TYPES,
    ORDER_TYPES,
    STP_MODES,
    TRIGGER_TYPES,
    Order,
)
from services.paradex_sim.util import Clock, is_multiple, parse_decimal

LIMIT_TYPES = ORDER_TYPES - MARKET_TYPES


@dataclass
class ParsedOrder:
    market: str
    side: str
    type: str
    size: Decimal
    size_raw: str
    price: Decimal | None
    price_raw: str | None
    instruction: str
    client_id: str
    flags: list[str]
    stp: str
    trigger_price: Decimal | None
    recv_window: int
    signature: tuple[int, int] | None
    signature_timestamp: int

    def fields(self) -> signing.OrderFields:
        return signing.OrderFields(self.market, self.side, self.type, self.size_raw, self.price_raw,
                                   self.signature_timestamp)


def _raw_decimal(body: dict[str, object], name: str) -> tuple[Decimal | None, str | None]:
    value = body.get(name)
    if value is None or value == "":
        return None, None
    d = parse_decimal(value)
    if d is None:
        raise validation(f"{name} must be a decimal string")
    return d, value if isinstance(value, str) else str(value)


class OrderService:
    def __init__(self, cfg: SimConfig, exchange: Exchange, clock: Clock) -> None:
        self.cfg = cfg
        self.ex = exchange
        self.clock = clock
        self.created = 0
        self.rejected = 0

    # -- parsing ------------------------------------------------------------------------------------

    def parse(self, body: object, *, modify: bool = False) -> ParsedOrder:
        if not isinstance(body, dict):
            raise ApiError(400, "BINDING_ERROR", "request body must be a JSON object")
        market = body.get("market")
        if not isinstance(market, str) or not market:
            raise validation("market is required")
        spec = self.ex.markets.get(market)
        if spec is None:
            raise bad_request("MARKET_NOT_FOUND", f"market {market!r} not found")
        side = body.get("side")
        if side not in ("BUY", "SELL"):
            raise validation("side must be BUY or SELL")
        otype = body.get("type")
        if otype not in ORDER_TYPES:
            raise validation(f"type must be one of {', '.join(sorted(ORDER_TYPES))}")
        size, size_raw = _raw_decimal(body, "size")
        if size is None or size_raw is None or size <= 0:
            raise validation("size must be a positive decimal string")
        price, price_raw = _raw_decimal(body, "price")
        if otype in MARKET_TYPES:
            price, price_raw = None, None  # signed as "0" whatever was sent
        elif price is None or price <= 0:
            raise validation(f"price is required for {otype} orders")
        instruction = body.get("instruction") or "GTC"
        if instruction not in INSTRUCTIONS:
            raise validation(f"instruction must be one of {', '.join(sorted(INSTRUCTIONS))}")
        if instruction == "RPI":
            raise bad_request("RPI_ACCOUNT_NOT_WHITELISTED", "account is not whitelisted for RPI orders")
        if instruction == "POST_ONLY" and otype not in LIMIT_TYPES:
            raise validation("POST_ONLY is only valid for limit order types")
        if instruction == "IOC" and otype in LIMIT_TYPES and otype != "LIMIT":
            raise validation("IOC is only valid for LIMIT and MARKET orders")
        client_id = body.get("client_id") or ""
        if not isinstance(client_id, str) or len(client_id) > 64:
            raise validation("client_id must be a string of at most 64 characters")
        flags = body.get("flags") or []
        if not isinstance(flags, list) or any(f not in FLAGS for f in flags):
            raise validation(f"flags must be a list of {', '.join(sorted(FLAGS))}")
        stp = body.get("stp") or "EXPIRE_TAKER"
        if stp not in STP_MODES:
            raise validation(f"stp must be one of {', '.join(sorted(STP_MODES))}")
        trigger, _ = _raw_decimal(body, "trigger_price")
        if otype in TRIGGER_TYPES:
            if trigger is None or trigger <= 0:
                raise validation(f"trigger_price is required for {otype} orders")
        elif trigger is not None and trigger != 0:
            raise validation("trigger_price is only valid for stop, take-profit and stop-loss orders")
        else:
            trigger = None
        recv_window = body.get("recv_window")
        if recv_window is None:
            recv_window = self.cfg.default_recv_window_ms
        if isinstance(recv_window, bool) or not isinstance(recv_window, int) or recv_window < 10:
            raise validation("recv_window must be an integer >= 10 (ms)")
        ts = body.get("signature_timestamp")
        if isinstance(ts, bool) or not isinstance(ts, int) or not 0 < ts < 10**15:
            raise validation("signature_timestamp must be an integer (unix ms)")
        sig_raw = body.get("signature")
        if not isinstance(sig_raw, str) or not sig_raw:
            raise validation("signature is required")
        try:
            signature = signing.parse_signature(sig_raw)
        except (ValueError, TypeError):
            raise bad_request("INVALID_ORDER_SIGNATURE", "signature must be a JSON array of two integers") from None
        obo = body.get("on_behalf_of_account")
        if obo not in (None, ""):
            raise bad_request("ISOLATED_MARKET_ACCOUNT_MISMATCH", "isolated-margin sub-accounts are not simulated")
        # Venue-side increments: tick and step are exact multiples, sizes within max_order_size.
        if price is not None and not is_multiple(price, spec.price_tick_size):
            raise validation(f"price {price_raw} is not a multiple of price_tick_size {spec.price_tick_size}")
        if trigger is not None and not is_multiple(trigger, spec.price_tick_size):
            raise validation(f"trigger_price is not a multiple of price_tick_size {spec.price_tick_size}")
        if not is_multiple(size, spec.order_size_increment):
            msg = f"size is not a multiple of order_size_increment {spec.order_size_increment}"
            raise bad_request("INVALID_ORDER_SIZE", msg) if modify else validation(msg)
        if size > spec.max_order_size:
            raise validation(f"size exceeds max_order_size {spec.max_order_size}")
        return ParsedOrder(market, str(side), str(otype), size, str(size_raw), price, price_raw, str(instruction),
                           client_id, [str(f) for f in flags], str(stp), trigger, recv_window, signature, ts)

    # -- checks -------------------------------------------------------------------------------------

    def check_trading(self, *, creating: bool, post_only: bool = False) -> None:
        status = self.ex.system_status
        if status == "maintenance":
            raise ApiError(503, "SERVICE_UNAVAILABLE", "exchange is under maintenance")
        if not creating:
            return
        if status == "cancel_only":
            raise bad_request("SYSTEM_STATUS_CANCEL_ONLY", "exchange is in cancel-only mode")
        if status == "post_only" and not post_only:
            raise bad_request("SYSTEM_STATUS_POST_ONLY", "exchange is in post-only mode: only POST_ONLY orders")

    def check_recv_window(self, p: ParsedOrder) -> None:
        now = self.clock.now_ms()
        if now > p.signature_timestamp + p.recv_window:
            raise bad_request(
                "INVALID_TIMESTAMP",
                f"signature_timestamp {p.signature_timestamp} is older than recv_window {p.recv_window} ms",
            )

    def verify(self, acct: Account, p: ParsedOrder, order_id: str | None = None) -> None:
        if not self.cfg.verify_signatures:
            return
        if acct.public_key is None or p.signature is None:
            raise bad_request("INVALID_ORDER_SIGNATURE", "account has no registered key")
        address = int(acct.address, 16)
        chain = self.cfg.starknet_chain_id
        try:
            h = (signing.modify_hash(chain, address, p.fields(), order_id) if order_id is not None
                 else signing.order_hash(chain, address, p.fields()))
        except ValueError as exc:
            raise bad_request("INVALID_ORDER_SIGNATURE", f"cannot hash order: {exc}") from None
        r, s = p.signature
        if not signing.verify(h, r, s, acct.public_key):
            raise bad_request("INVALID_ORDER_SIGNATURE", "order signature verification failed")

    def check_sync_risk(self, p: ParsedOrder) -> None:
        if self.cfg.risk_reject_mode != "sync":
            return
        spec = self.ex.markets[p.market]
        mark = self.ex.pricing.mark(p.market)
        if p.type not in TRIGGER_TYPES and band_violation(spec, mark, p.side, p.type, p.price):
            raise validation(f"price is outside the price band of {spec.price_bands_width} around mark {mark}")
        if p.size * mark < spec.min_notional and "REDUCE_ONLY" not in p.flags:
            raise validation(f"order notional is below min_notional {spec.min_notional}")

    # -- operations ---------------------------------------------------------------------------------

    def validate_new(self, acct: Account, body: object) -> ParsedOrder:
        p = self.parse(body)
        self.check_trading(creating=True, post_only=p.instruction == "POST_ONLY")
        self.check_recv_window(p)
        self.verify(acct, p)
        self.check_sync_risk(p)
        return p

    def submit(self, acct: Account, p: ParsedOrder) -> Order:
        order = self.ex.submit(
            acct, market=p.market, side=p.side, type=p.type, size=p.size, price=p.price,
            instruction=p.instruction, client_id=p.client_id, flags=p.flags, stp=p.stp,
            trigger_price=p.trigger_price, timestamp=p.signature_timestamp,
        )
        self.created += 1
        return order

    def create(self, acct: Account, body: object) -> Order:
        try:
            return self.submit(acct, self.validate_new(acct, body))
        except ApiError:
            self.rejected += 1
            raise

    def create_batch(self, acct: Account, bodies: object) -> tuple[list[Order], list[dict[str, object]]]:
        if not isinstance(bodies, list):
            raise ApiError(400, "BINDING_ERROR", "request body must be a JSON array of orders")
        if not 1 <= len(bodies) <= self.cfg.max_batch_size:
            raise bad_request("BATCH_SIZE_OUT_OF_RANGE", f"batch size must be between 1 and {self.cfg.max_batch_size}")
        parsed = [self.validate_new(acct, b) for b in bodies]  # any basic failure rejects the batch
        orders: list[Order] = []
        errors: list[dict[str, object]] = []
        for i, p in enumerate(parsed):
            try:
                orders.append(self.submit(acct, p))
            except ApiError as exc:
                self.rejected += 1
                errors.append({**exc.body(), "data": {"index": i, "client_id": p.client_id}})
        return orders, errors

    def find(self, acct: Account, order_id: str) -> Order:
        order = self.ex.orders.get(order_id)
        if order is None or order.account != acct.address:
            raise ApiError(404, "ORDER_ID_NOT_FOUND", f"order {order_id} not found")
        return order

    def find_open_by_client_id(self, acct: Account, client_id: str, market: str | None = None) -> Order:
        order = acct.open_by_cid.get(client_id)
        if order is None or (market and order.market != market):
            raise ApiError(404, "CLIENT_ORDER_ID_NOT_FOUND", f"no open order with client_id {client_id!r}")
        return order

    def modify(self, acct: Account, order_id: str, body: object) -> Order:
        if isinstance(body, dict) and str(body.get("id", order_id)) != order_id:
            raise validation("id in the body differs from the order id in the path")
        p = self.parse(body, modify=True)
        order = self.find(acct, order_id)
        self.check_trading(creating=True, post_only=order.instruction == "POST_ONLY")
        if order.status == CLOSED:
            raise bad_request("ORDER_IS_CLOSED", f"order {order_id} is closed")
        if (p.market, p.side, p.type) != (order.market, order.side, order.type):
            raise validation("market, side and type must match the existing order")
        if order.type in MARKET_TYPES:
            raise validation(f"{order.type} orders cannot be modified")
        if p.size <= order.filled:
            raise bad_request("INVALID_ORDER_SIZE", "new size must exceed the filled size")
        self.check_recv_window(p)
        self.verify(acct, p, order_id=order_id)
        self.ex.modify(acct, order, p.size, p.price, p.trigger_price, p.signature_timestamp)
        return order

    def cancel(self, acct: Account, order_id: str) -> Order:
        self.check_trading(creating=False)
        order = self.find(acct, order_id)
        self.ex.cancel(acct, order)
        return order

    def cancel_by_client_id(self, acct: Account, client_id: str, market: str | None) -> Order:
        self.check_trading(creating=False)
        order = self.find_open_by_client_id(acct, client_id, market)
        self.ex.cancel(acct, order)
        return order

    def cancel_all(self, acct: Account, market: str | None) -> list[Order]:
        self.check_trading(creating=False)
        if market and market not in self.ex.markets:
            raise bad_request("MARKET_NOT_FOUND", f"market {market!r} not found")
        return self.ex.cancel_all(acct, market or None)

    def cancel_batch(self, acct: Account, order_ids: object, client_ids: object) -> list[dict[str, object]]:
        self.check_trading(creating=False)
        order_ids = order_ids or []
        client_ids = client_ids or []
        if not isinstance(order_ids, list) or not isinstance(client_ids, list):
            raise validation("order_ids and client_order_ids must be lists")
        if not order_ids and not client_ids:
            raise validation("order_ids or client_order_ids is required")
        if len(order_ids) + len(client_ids) > self.cfg.max_batch_size:
            raise bad_request("BATCH_SIZE_OUT_OF_RANGE", f"batch size must be at most {self.cfg.max_batch_size}")
        results: list[dict[str, object]] = []
        for oid in order_ids:
            order = self.ex.orders.get(str(oid))
            if order is None or order.account != acct.address:
                results.append({"id": str(oid), "status": "NOT_FOUND"})
                continue
            results.append(self._cancel_item(acct, order))
        for cid in client_ids:
            order = acct.open_by_cid.get(str(cid))
            if order is None:
                results.append({"client_id": str(cid), "status": "NOT_FOUND"})
                continue
            results.append(self._cancel_item(acct, order))
        return results

    def _cancel_item(self, acct: Account, order: Order) -> dict[str, object]:
        status = "ALREADY_CLOSED"
        if order.status != CLOSED:
            self.ex.cancel(acct, order)
            status = "QUEUED_FOR_CANCELLATION"
        return {"id": order.id, "client_id": order.client_id, "account": order.account, "market": order.market,
                "status": status}
