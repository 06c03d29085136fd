"""JWTs for authenticated REST and WS (paradex-api.md §3.3): payload ``typ, exp, iat, iss, sub``
with a 300 s lifetime, checked against the simulator clock (so the admin clock offset ages them).

The venue signs with ES384; the simulator uses HS256 with a per-process secret because clients
only decode the payload unverified (to schedule refreshes) and the ``cryptography`` package is not
a dependency. Tokens from another simulator process are therefore invalid, as after a venue
key rotation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import jwt

from services.paradex_sim.util import Clock


class TokenError(Exception):
    """``kind`` is ``malformed`` (not a JWT at all) or ``invalid`` (bad signature, expired, unknown)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Claims:
    account: str
    exp: int
    iat: int


class JwtIssuer:
    ALG = "HS256"

    def __init__(self, clock: Clock, lifetime_s: int = 300, issuer: str = "Paradex sim") -> None:
        self.clock = clock
        self.lifetime_s = lifetime_s
        self.issuer = issuer
        self._secret = secrets.token_bytes(32)

    def issue(self, account: str) -> str:
        iat = int(self.clock.now_s())
        payload = {"typ": "at+JWT", "exp": iat + self.lifetime_s, "iat": iat, "iss": self.issuer, "sub": account}
        return jwt.encode(payload, self._secret, algorithm=self.ALG, headers={"typ": "JWT"})

    def verify(self, token: str) -> Claims:
        if not isinstance(token, str) or token.count(".") != 2 or len(token) > 4096:
            raise TokenError("malformed", "missing or malformed jwt")
        try:
            payload = jwt.decode(token, self._secret, algorithms=[self.ALG], options={"verify_exp": False,
                                                                                       "verify_iat": False})
        except jwt.exceptions.DecodeError as exc:
            if "Signature verification failed" in str(exc):
                raise TokenError("invalid", "invalid bearer jwt: token signature is invalid") from None
            raise TokenError("malformed", "missing or malformed jwt") from None
        except jwt.exceptions.PyJWTError:
            raise TokenError("invalid", "invalid bearer jwt: token is invalid") from None
        exp, sub = payload.get("exp"), payload.get("sub")
        if not isinstance(exp, int) or not isinstance(sub, str):
            raise TokenError("invalid", "invalid bearer jwt: token claims are invalid")
        now = self.clock.now_s()
        if now >= exp:
            raise TokenError("invalid", f"invalid bearer jwt: token is expired by {now - exp:.6f}s")
        return Claims(account=sub, exp=exp, iat=int(payload.get("iat", 0)))
