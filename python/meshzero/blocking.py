"""The blocking API: :class:`Mesh`, for scripts and notebooks.

A thin facade: it runs an :class:`~meshzero.AsyncMesh` on an event loop in a
background thread and waits for each coroutine's result. Handlers run on the
AsyncMesh's handler threads; event callbacks run one at a time, in order, on
a callback thread of their own, so both may call the mesh again.
"""
import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, TypeVar

from .aio import AsyncMesh, Callback, Handler, Subscription
from .types import Event, Peer, Resource, Status

__all__ = ["Mesh", "SubscriptionHandle", "connect"]

log = logging.getLogger("meshzero")
T = TypeVar("T")


class SubscriptionHandle:
    """What :meth:`Mesh.subscribe` returns; ``unsubscribe()`` ends it."""

    def __init__(self, mesh: "Mesh", sub: Subscription) -> None:
        self._mesh = mesh
        self.subscription = sub
        self.topic = sub.topic

    def unsubscribe(self) -> None:
        """Ends the subscription (idempotent)."""
        self._mesh._run(self.subscription.unsubscribe())


class Mesh:
    """A blocking connection to a node's local API; see :func:`connect`.
    Every method has the seed's name and keyword arguments and is the
    same-named coroutine of :class:`~meshzero.AsyncMesh`, waited for."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None,
                 timeout: float = 30.0, reconnect: bool = False, **kw: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="meshzero-loop", daemon=True)
        self._thread.start()
        self._callbacks = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="meshzero-callback")
        self._closed = False

        async def make() -> AsyncMesh:
            return AsyncMesh(url, token=token, timeout=timeout, reconnect=reconnect, **kw)
        try:
            self.aio: AsyncMesh = self._run(make())
            self._run(self.aio.connect())
        except BaseException:
            self._stop()
            raise

    def _run(self, coro: Awaitable[T]) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("a blocking meshzero call from an async callback would deadlock; "
                               "use AsyncMesh in async code")
        if self._closed and self._loop.is_closed():
            raise RuntimeError("the mesh connection is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._callbacks.shutdown(wait=False)

    # ---- lifecycle ----

    def close(self) -> None:
        """Closes the connection and stops the background thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self.aio.close())
        finally:
            self._stop()

    def __enter__(self) -> "Mesh":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """True while the API connection is open."""
        return self.aio.connected

    @property
    def node_id(self) -> Optional[str]:
        """The id of the node this client talks to."""
        return self.aio.node_id

    @property
    def stats(self) -> Dict[str, int]:
        """Counters of what the client ignored or dropped (a copy)."""
        return dict(self.aio.stats)

    def wait_connected(self, timeout: Optional[float] = None) -> None:
        """Waits until the connection is up again after a loss (Timeout if not)."""
        self._run(self.aio.wait_connected(timeout))

    # ---- the seed's calls ----

    def register_resource(self, resource_id: str, resource_type: str,
                          capabilities: Optional[Sequence[str]] = None,
                          owner: Optional[str] = None, metadata: Optional[Dict[str, Any]] = None,
                          handler: Optional[Handler] = None,
                          methods: Optional[Sequence[str]] = None) -> Resource:
        """See :meth:`AsyncMesh.register_resource`; ``handler`` is a plain
        function ``handler(method, params, caller)``, called on a handler
        thread, several calls at once."""
        return self._run(self.aio.register_resource(
            resource_id=resource_id, resource_type=resource_type, capabilities=capabilities,
            owner=owner, metadata=metadata, handler=handler, methods=methods))

    def unregister_resource(self, resource_id: str) -> None:
        """See :meth:`AsyncMesh.unregister_resource`."""
        self._run(self.aio.unregister_resource(resource_id))

    def query_resources(self, resource_type: Optional[str] = None,
                        capabilities: Optional[Sequence[str]] = None,
                        owner: Optional[str] = None, location: Optional[str] = None,
                        limit: Optional[int] = None) -> List[Resource]:
        """See :meth:`AsyncMesh.query_resources`."""
        return self._run(self.aio.query_resources(
            resource_type=resource_type, capabilities=capabilities, owner=owner,
            location=location, limit=limit))

    def connect_to_peer(self, url: str) -> str:
        """See :meth:`AsyncMesh.connect_to_peer`."""
        return self._run(self.aio.connect_to_peer(url))

    def subscribe(self, topic: str, callback: Callable[[Event], Any]) -> SubscriptionHandle:
        """Calls ``callback(event)`` for each event of ``topic`` (a topic,
        ``prefix.*`` or ``*``), in order, on the callback thread."""
        if not callable(callback):
            raise TypeError("subscribe: callback must be callable as callback(event)")

        def on_loop(ev: Event) -> None:
            self._callbacks.submit(self._guarded, callback, ev)
        return SubscriptionHandle(self, self._run(self.aio.subscribe(topic, on_loop)))

    @staticmethod
    def _guarded(callback: Callback, ev: Event) -> None:
        try:
            callback(ev)
        except Exception:
            log.exception("meshzero: event callback for %r raised", ev.topic)

    def publish(self, topic: str, data: Any = None) -> None:
        """See :meth:`AsyncMesh.publish`."""
        self._run(self.aio.publish(topic, data))

    def execute_remote(self, resource_id: str, method: str,
                       params: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None,
                       agreement: Optional[Dict[str, Any]] = None) -> Any:
        """See :meth:`AsyncMesh.execute_remote`."""
        return self._run(self.aio.execute_remote(resource_id=resource_id, method=method,
                                                 params=params, timeout=timeout,
                                                 agreement=agreement))

    def peers(self) -> List[Peer]:
        """See :meth:`AsyncMesh.peers`."""
        return self._run(self.aio.peers())

    def status(self) -> Status:
        """See :meth:`AsyncMesh.status`."""
        return self._run(self.aio.status())

    def call(self, method: str, params: Optional[Dict[str, Any]] = None,
             timeout: Optional[float] = None) -> Any:
        """See :meth:`AsyncMesh.call`."""
        return self._run(self.aio.call(method, params, timeout))


def connect(url: Optional[str] = None, token: Optional[str] = None, timeout: float = 30.0,
            reconnect: bool = False, **kw: Any) -> Mesh:
    """Connects to a node's local API and returns a blocking :class:`Mesh`.

    ``url`` default ``$MESHZERO_API``, then ``ws://127.0.0.1:8766``
    (``unix:/PATH`` for a unix socket); ``token`` default
    ``$MESHZERO_API_TOKEN``; ``timeout`` bounds each request (and the
    connect); ``reconnect=True`` re-dials a lost connection and sets up its
    subscriptions and served resources again. Raises ConnectionLost if the
    node cannot be reached.
    """
    return Mesh(url, token=token, timeout=timeout, reconnect=reconnect, **kw)
