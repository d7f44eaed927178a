"""meshzero: the Python client of a meshzero node.

Blocking, for scripts and notebooks::

    import meshzero
    mesh = meshzero.connect()                      # $MESHZERO_API or ws://127.0.0.1:8766
    mesh.register_resource(resource_id="agent123", resource_type="agent",
                           capabilities=["image_processing"])
    mesh.query_resources(resource_type="agent", capabilities=["image_processing"])

asyncio::

    async with meshzero.AsyncMesh(url) as mesh:
        async for event in mesh.events("resource.*"):
            ...
"""
from .aio import DEFAULT_URL, AsyncMesh, EventStream, Subscription, topic_matches
from .blocking import Mesh, SubscriptionHandle, connect
from .errors import (BadRequest, Busy, ConnectionLost, Denied, HandlerError, MeshError, NotFound,
                     Timeout, TooLarge, Unreachable)
from .types import Event, Peer, Resource, Status

__version__ = "0.1.0"

__all__ = [
    "connect", "Mesh", "AsyncMesh", "Subscription", "SubscriptionHandle", "EventStream",
    "Resource", "Event", "Peer", "Status", "MeshError", "NotFound", "Unreachable", "Timeout",
    "HandlerError", "Busy", "Denied", "BadRequest", "TooLarge", "ConnectionLost",
    "DEFAULT_URL", "topic_matches",
]
