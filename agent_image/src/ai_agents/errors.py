"""Typed errors raised by the service layer; each API maps them to its own status codes."""

from __future__ import annotations

import grpc


class AiAgentsError(Exception):
    """Base class: carries the gRPC status and HTTP status that the APIs answer with."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(AiAgentsError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    code = "invalid_argument"


class NotFound(AiAgentsError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    code = "not_found"


class AlreadyExists(AiAgentsError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409
    code = "already_exists"


class FailedPrecondition(AiAgentsError):
    """The request is valid but the object is not in a state that allows it (e.g. a stale lease token)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409
    code = "failed_precondition"


class ResourceExhausted(AiAgentsError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    code = "resource_exhausted"


class Unauthenticated(AiAgentsError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    code = "unauthenticated"


class PermissionDenied(AiAgentsError):
    """The caller proved who it is, but acts for another agent (or type) than its credential names."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403
    code = "permission_denied"


class Unavailable(AiAgentsError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    code = "unavailable"
