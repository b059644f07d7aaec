"""``f1 serve``: a websocket policy server speaking openpi-client's protocol (msgpack-numpy frames).

Needs the ``serve`` extra (``pip install 'f1[serve]'``: ``websockets`` and ``msgpack``); ``import f1``
does not import this package. Pieces, one job each: :mod:`~f1.serve.codec` (the wire format),
:mod:`~f1.serve.protocol` (keys, modes, connect metadata), :mod:`~f1.serve.requests` (the input boundary),
:mod:`~f1.serve.session` (one connection's policy state), :mod:`~f1.serve.server` (:class:`PolicyServer`).
The protocol and a client snippet: docs/deployment.md.
"""

from f1.serve.codec import packb, unpackb
from f1.serve.protocol import MODES, PROTOCOL_VERSION, server_metadata
from f1.serve.requests import Request, parse_request
from f1.serve.server import DEFAULT_MAX_MESSAGE_BYTES, PolicyServer
from f1.serve.session import Session

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MODES",
    "PROTOCOL_VERSION",
    "PolicyServer",
    "Request",
    "Session",
    "packb",
    "parse_request",
    "server_metadata",
    "unpackb",
]
