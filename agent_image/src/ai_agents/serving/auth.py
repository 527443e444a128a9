"""Bearer-token check shared by the gRPC and HTTP APIs."""

from __future__ import annotations

import hmac


class TokenCheck:
    """Accepts any request when no token is configured; otherwise requires `Bearer <token>`."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def allows(self, authorization: str | None) -> bool:
        if self._token is None:
            return True
        if not authorization or not authorization.startswith("Bearer "):
            return False
        try:
            # aiohttp decodes header bytes that are not UTF-8 as surrogate escapes: this restores the bytes sent.
            presented = authorization[len("Bearer ") :].strip().encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return False  # lone surrogates no client could have sent as bytes: not our token either
        # Constant-time comparison: the token must not leak through timing.
        return hmac.compare_digest(presented, self._token)
