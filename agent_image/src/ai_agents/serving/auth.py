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
        # Constant-time comparison: the token must not leak through timing.
        return hmac.compare_digest(authorization[len("Bearer ") :].strip().encode(), self._token)
