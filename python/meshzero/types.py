"""Typed results: frozen dataclasses built from what the node answers.

Each ``from_dict`` checks the shape it needs and raises
:class:`~meshzero.MeshError` (code ``bad_reply``) on anything else, so a
malformed answer fails the one call that got it, never the client.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .errors import MeshError

__all__ = ["Resource", "Event", "Peer", "Status"]


def _bad(what: str, value: Any) -> MeshError:
    return MeshError("malformed %s from the node: %.200r" % (what, value), code="bad_reply")


def _get(d: Dict[str, Any], key: str, types: Any, what: str, default: Any = None,
         required: bool = False) -> Any:
    """d[key] if it has one of types (bool never passes for a number)."""
    v = d.get(key)
    if v is None:
        if required:
            raise _bad("%s (no %r)" % (what, key), d)
        return default
    if not isinstance(v, types) or isinstance(v, bool):
        raise _bad("%s (field %r)" % (what, key), d)
    return v


@dataclass(frozen=True)
class Resource:
    """A resource record as the node sees it.

    The seed's fields (``resource_id``, ``resource_type``, ``location``,
    ``owner``, ``capabilities``, ``metadata``) plus ``node`` (the hosting
    node's id), ``version`` (+1 on every update), ``owner_key`` and
    ``signature``.
    """
    resource_id: str
    resource_type: str
    capabilities: Tuple[str, ...] = ()
    owner: str = ""
    metadata: Dict[str, Any] = field(default_factory=dict)
    location: str = "local"
    node: str = ""
    version: int = 0
    owner_key: str = ""
    signature: str = ""

    @classmethod
    def from_dict(cls, d: Any) -> "Resource":
        """Builds a Resource from a record object (MeshError if malformed)."""
        if not isinstance(d, dict):
            raise _bad("record", d)
        caps = _get(d, "capabilities", list, "record", [])
        if not all(isinstance(c, str) for c in caps):
            raise _bad("record (capabilities)", d)
        return cls(
            resource_id=_get(d, "resource_id", str, "record", required=True),
            resource_type=_get(d, "resource_type", str, "record", required=True),
            capabilities=tuple(caps),
            owner=_get(d, "owner", str, "record", ""),
            metadata=dict(_get(d, "metadata", dict, "record", {})),
            location=_get(d, "location", str, "record", "local"),
            node=_get(d, "node", str, "record", ""),
            version=_get(d, "version", int, "record", 0),
            owner_key=_get(d, "owner_key", str, "record", ""),
            signature=_get(d, "signature", str, "record", ""),
        )

    def to_dict(self) -> Dict[str, Any]:
        """The record as a JSON-able dict, in the seed's layout plus
        ``node``, ``version``, ``owner_key`` and ``signature``."""
        return {
            "resource_id": self.resource_id,
            "resource_type": self.resource_type,
            "location": self.location,
            "owner": self.owner,
            "capabilities": list(self.capabilities),
            "metadata": dict(self.metadata),
            "node": self.node,
            "version": self.version,
            "owner_key": self.owner_key,
            "signature": self.signature,
        }


@dataclass(frozen=True)
class Event:
    """An event delivered to a subscription: its ``topic``, its ``data``
    (any JSON; for ``resource.*`` the record as a dict) and ``source``, the
    id of the node that raised or published it."""
    topic: str
    data: Any = None
    source: str = ""

    @classmethod
    def from_dict(cls, d: Any) -> "Event":
        """Builds an Event from a notification's params (MeshError if malformed)."""
        if not isinstance(d, dict):
            raise _bad("event", d)
        return cls(topic=_get(d, "topic", str, "event", required=True), data=d.get("data"),
                   source=_get(d, "source", str, "event", ""))

    def resource(self) -> Optional[Resource]:
        """For ``resource.*`` events, the record as a Resource (else None)."""
        try:
            return Resource.from_dict(self.data) if self.topic.startswith("resource.") else None
        except MeshError:
            return None


@dataclass(frozen=True)
class Peer:
    """A linked peer: its node ``id``, advertised ``listen`` URL, socket
    ``addr``, ``direction`` (``"in"``/``"out"``), dialed ``url`` and ``since``."""
    id: str
    listen: str = ""
    addr: str = ""
    direction: str = ""
    url: str = ""
    since: str = ""

    @classmethod
    def from_dict(cls, d: Any) -> "Peer":
        """Builds a Peer from one entry of ``peers`` (MeshError if malformed)."""
        if not isinstance(d, dict):
            raise _bad("peer", d)
        return cls(id=_get(d, "id", str, "peer", required=True),
                   **{k: _get(d, k, str, "peer", "")
                      for k in ("listen", "addr", "direction", "url", "since")})


@dataclass(frozen=True)
class Status:
    """A node's status: ``id``, ``listen``, ``api``, ``uptime_s``, ``peers``
    (count), ``resources_local``, ``resources_remote``, ``nodes_known``,
    ``routes``, and the ``counters`` and ``limits`` objects as dicts."""
    id: str
    listen: str = ""
    api: str = ""
    uptime_s: float = 0
    peers: int = 0
    resources_local: int = 0
    resources_remote: int = 0
    nodes_known: int = 0
    routes: int = 0
    counters: Dict[str, Any] = field(default_factory=dict)
    limits: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any) -> "Status":
        """Builds a Status from the ``status`` answer (MeshError if malformed)."""
        if not isinstance(d, dict):
            raise _bad("status", d)
        res = _get(d, "resources", dict, "status", {})
        num = (int, float)
        return cls(
            id=_get(d, "id", str, "status", required=True),
            listen=_get(d, "listen", str, "status", ""),
            api=_get(d, "api", str, "status", ""),
            uptime_s=_get(d, "uptime_s", num, "status", 0),
            peers=_get(d, "peers", int, "status", 0),
            resources_local=_get(res, "local", int, "status", 0),
            resources_remote=_get(res, "remote", int, "status", 0),
            nodes_known=_get(d, "nodes_known", int, "status", 0),
            routes=_get(d, "routes", int, "status", 0),
            counters=dict(_get(d, "counters", dict, "status", {})),
            limits=dict(_get(d, "limits", dict, "status", {})),
        )
