"""Exceptions raised by the meshzero client.

Every failure is a :class:`MeshError`. Failures the node reports map one to one
onto a subclass by their code (``not_found`` -> :class:`NotFound`, ...); the
client adds :class:`TooLarge` (a message over the node's ``max_message``) and
:class:`ConnectionLost` (the API connection closed or could not be opened).
"""
from typing import Any, Dict, Optional, Type

__all__ = [
    "MeshError", "NotFound", "Unreachable", "Timeout", "HandlerError", "Busy",
    "Denied", "BadRequest", "TooLarge", "ConnectionLost", "error_from_rpc",
]


class MeshError(Exception):
    """Root of every meshzero error.

    ``code`` is the node's code (``"not_found"``, ``"busy"``, ...) or the
    client's (``"too_large"``, ``"connection_lost"``, ``"bad_reply"``);
    ``message`` the text; ``data`` the JSON-RPC error's ``data`` (or None).
    """

    code = "error"

    def __init__(self, message: str = "", code: Optional[str] = None,
                 data: Optional[Any] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.data = data

    def __str__(self) -> str:
        return "%s: %s" % (self.code, self.message) if self.message else self.code

    def __repr__(self) -> str:
        return "%s(code=%r, message=%r)" % (type(self).__name__, self.code, self.message)


class NotFound(MeshError):
    """No such resource (in the caller's directory, or on its host)."""
    code = "not_found"


class Unreachable(MeshError):
    """No path to the resource's host got a call through, or the host left."""
    code = "unreachable"


class Timeout(MeshError, TimeoutError):
    """No answer within the call's timeout. Also a built-in ``TimeoutError``."""
    code = "timeout"


class HandlerError(MeshError):
    """The resource's handler failed; ``message`` is its text."""
    code = "handler_error"


class Busy(MeshError):
    """The host (or the local node) runs as many calls as its limit allows."""
    code = "busy"


class Denied(MeshError):
    """The resource requires an agreement and the call's is missing or refused."""
    code = "denied"


class BadRequest(MeshError):
    """The request was refused as invalid: bad params, unknown method, ..."""
    code = "bad_request"


class TooLarge(MeshError):
    """A message over the node's ``max_message`` (refused before sending, or
    the node closed the connection with 1009 "message too big")."""
    code = "too_large"


class ConnectionLost(MeshError):
    """The API connection closed (or could not be opened) before the answer."""
    code = "connection_lost"


# The node's execute codes (PROTOCOL.md "execute_result"), one class each.
_BY_CODE: Dict[str, Type[MeshError]] = {
    c.code: c for c in (NotFound, Unreachable, Timeout, HandlerError, Busy, Denied,
                        BadRequest, TooLarge, ConnectionLost)
}

# Failures of other API methods carry the node's status name instead.
_BY_STATUS: Dict[str, Type[MeshError]] = {
    "ENOTFOUND": NotFound,
    "EUNREACHABLE": Unreachable,
    "ETIMEOUT": Timeout,
    "ELIMIT": Busy,
    "EINVAL": BadRequest,
    "EPROTO": BadRequest,
    "EEXIST": BadRequest,
    "ESIG": Denied,
}

# JSON-RPC's own codes: the request itself was wrong.
_BY_RPC_CODE = {-32700: BadRequest, -32600: BadRequest, -32601: BadRequest,
                -32602: BadRequest}


def error_from_rpc(err: Any) -> MeshError:
    """The exception for a JSON-RPC ``error`` member, whatever shape it has."""
    if not isinstance(err, dict):
        return MeshError("the node answered with a malformed error: %.200r" % (err,),
                         code="bad_reply")
    data = err.get("data")
    message = err.get("message")
    message = message if isinstance(message, str) else repr(message)
    cls: Type[MeshError] = MeshError
    code = None
    if isinstance(data, dict):
        dcode, status = data.get("code"), data.get("status")
        if isinstance(dcode, str) and dcode in _BY_CODE:
            cls = _BY_CODE[dcode]
            # execute_remote: message "CODE: text", data.message the text alone
            if isinstance(data.get("message"), str):
                message = data["message"]
        elif isinstance(dcode, str):
            code = dcode
        elif isinstance(status, str) and status in _BY_STATUS:
            cls = _BY_STATUS[status]
    if cls is MeshError and code is None:
        rc = err.get("code")
        if isinstance(rc, int) and rc in _BY_RPC_CODE:
            cls = _BY_RPC_CODE[rc]
    return cls(message, code=code, data=data)
