"""The asyncio client: :class:`AsyncMesh`, one JSON-RPC 2.0 connection to a
node's local API (docs/PROTOCOL.md "Local API").

Everything the client does happens here; the blocking :class:`meshzero.Mesh`
runs this same code on a background event loop.
"""
import asyncio
import collections
import concurrent.futures
import inspect
import json
import logging
import os
import re
import urllib.parse
from typing import (Any, Awaitable, Callable, Dict, List, Optional, Sequence,
                    Tuple, Union)

import websockets

from .errors import (BadRequest, ConnectionLost, HandlerError, MeshError, Timeout, TooLarge,
                     error_from_rpc)
from .types import Event, Peer, Resource, Status

__all__ = ["AsyncMesh", "Subscription", "EventStream", "DEFAULT_URL", "topic_matches"]

log = logging.getLogger("meshzero")

DEFAULT_URL = "ws://127.0.0.1:8766"
# Largest message accepted from the node (the meshzero CLI's figure).
DEFAULT_MAX_RECEIVE = 64 * 1024 * 1024
# What the node accepts when its status does not say (its default).
DEFAULT_NODE_MAX_MESSAGE = 1024 * 1024
DEFAULT_EXEC_TIMEOUT = 30.0      # the node's default call timeout, seconds
EXEC_SLACK = 5.0                 # the node answers `timeout` itself; this is a safety net
RECONNECT_FIRST, RECONNECT_MAX = 0.05, 2.0
EVENT_QUEUE = 10000              # events buffered per stream before they are dropped (counted)

# Codes a handler may answer with instead of handler_error (the node's rule).
_HANDLER_CODES = ("bad_request", "busy", "timeout")
_TOO_BIG_RE = re.compile(r"over (\d+) bytes")

Handler = Callable[[str, Dict[str, Any], str], Any]
Callback = Callable[[Event], Any]


def topic_matches(pattern: str, topic: str) -> bool:
    """The node's subscription rule: ``*`` matches every topic, ``prefix.*``
    every topic that starts with ``prefix.`` (and is longer), anything else
    only itself."""
    if pattern == "*":
        return True
    if len(pattern) >= 2 and pattern.endswith(".*"):
        return topic.startswith(pattern[:-1]) and len(topic) > len(pattern) - 1
    return pattern == topic


def _resolve(url: Optional[str], token: Optional[str]) -> Tuple[Optional[str], str, str]:
    """(unix socket path or None, WebSocket URI, URL for messages)."""
    url = url or os.environ.get("MESHZERO_API") or DEFAULT_URL
    token = token or os.environ.get("MESHZERO_API_TOKEN") or None
    path = None
    uri = url
    if url.startswith("unix:"):
        path = url[len("unix:"):]
        if not path:
            raise BadRequest("API URL %r: unix: needs a socket path, e.g. unix:/run/mz.sock" % url)
        uri = "ws://localhost/"
    elif not url.startswith(("ws://", "wss://")):
        raise BadRequest("API URL %r: expected ws://HOST:PORT, wss://HOST:PORT or unix:/PATH"
                         % url)
    if token and "token=" not in uri:
        parts = urllib.parse.urlsplit(uri)
        query = (parts.query + "&" if parts.query else "") + "token=" + urllib.parse.quote(token)
        uri = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))
    return path, uri, url


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Subscription:
    """A subscription to a topic pattern. ``await sub.unsubscribe()`` ends it
    (the blocking API's handle has a plain ``unsubscribe()``). ``dropped``
    counts events a full :class:`EventStream` buffer could not hold."""

    def __init__(self, mesh: "AsyncMesh", topic: str, callback: Optional[Callback],
                 queue: Optional["asyncio.Queue[Any]"]) -> None:
        self.topic = topic
        self.dropped = 0
        self._mesh = mesh
        self._callback = callback
        self._queue = queue
        self.active = True

    async def unsubscribe(self) -> None:
        """Ends the subscription (idempotent)."""
        await self._mesh._unsubscribe(self)

    def _deliver(self, ev: Event) -> None:
        if self._queue is not None:
            try:
                self._queue.put_nowait(ev)
            except asyncio.QueueFull:
                self.dropped += 1
                self._mesh.stats["events_dropped"] += 1
            return
        try:
            r = self._callback(ev) if self._callback is not None else None
            if inspect.isawaitable(r):
                self._mesh._spawn(r, "event callback for %s" % ev.topic)
        except Exception:   # a callback's bug must not stop the client
            self._mesh.stats["callback_errors"] += 1
            log.exception("meshzero: event callback for %r raised", ev.topic)

    def _end(self, exc: Optional[BaseException]) -> None:
        if self._queue is not None:
            try:
                self._queue.put_nowait(exc if exc is not None else StopAsyncIteration())
            except asyncio.QueueFull:
                pass


class EventStream:
    """``async for event in mesh.events("resource.*")``: events of a topic
    pattern as they come. Subscribes on ``async with`` (or at the first
    iteration) and unsubscribes on exit; a lost connection ends the
    iteration with :class:`ConnectionLost` unless the mesh reconnects."""

    def __init__(self, mesh: "AsyncMesh", topic: str, maxsize: int) -> None:
        self._mesh, self._topic, self._maxsize = mesh, topic, maxsize
        self.subscription: Optional[Subscription] = None

    async def start(self) -> "EventStream":
        """Subscribes now (events from here on are kept)."""
        if self.subscription is None:
            self.subscription = await self._mesh._subscribe(
                self._topic, None, asyncio.Queue(self._maxsize))
        return self

    async def __aenter__(self) -> "EventStream":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Unsubscribes."""
        if self.subscription is not None:
            await self.subscription.unsubscribe()

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> Event:
        await self.start()
        assert self.subscription is not None and self.subscription._queue is not None
        item = await self.subscription._queue.get()
        if isinstance(item, BaseException):
            self.subscription._queue.put_nowait(item)    # stays ended
            raise item
        return item


class _Served:
    """A resource this connection serves: how to register it again, and its handler."""

    def __init__(self, params: Dict[str, Any], handler: Handler) -> None:
        self.params = params
        self.handler = handler


class AsyncMesh:
    """An asyncio connection to a meshzero node's local API.

    ``async with AsyncMesh(url) as mesh:`` connects (``url`` default
    ``$MESHZERO_API``, then ``ws://127.0.0.1:8766``; ``unix:/PATH`` for a unix
    socket; ``token`` default ``$MESHZERO_API_TOKEN``). ``timeout`` bounds
    every request but ``execute_remote`` (which waits for its own timeout).
    With ``reconnect=True`` a lost connection is re-dialed with backoff and
    its subscriptions and served resources are set up again; calls made
    while it is down fail with :class:`ConnectionLost`.

    Handlers (``register_resource(handler=...)``) are called as
    ``handler(method, params, caller)``, each call in its own task: coroutine
    functions on the loop, plain functions on a pool of ``handler_threads``
    threads. Event callbacks: plain functions run on the loop (keep them
    short), coroutine functions as tasks.
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None,
                 timeout: float = 30.0, reconnect: bool = False,
                 max_receive: int = DEFAULT_MAX_RECEIVE, handler_threads: int = 32) -> None:
        self._path, self._uri, self.url = _resolve(url, token)
        self.timeout = timeout
        self.reconnect = reconnect
        self._max_receive = max_receive
        self.max_message = DEFAULT_NODE_MAX_MESSAGE
        self.node_id: Optional[str] = None
        self.stats: "collections.Counter[str]" = collections.Counter()
        self._ws: Any = None
        self._gen = 0                                   # connection generation
        self._next_id = 0
        # id -> (future, request size, hook run on the result as soon as it is read)
        self._pending: Dict[int, Tuple["asyncio.Future[Any]", int, Any]] = {}
        self._subs: Dict[str, List[Subscription]] = {}  # pattern -> local subscriptions
        self._node_sub: Dict[str, int] = {}             # pattern -> the node's subscription id
        self._subscribing: Dict[str, "asyncio.Future[None]"] = {}   # patterns asked for
        self._rr: Dict[str, int] = {}                   # topic -> next pattern to get it
        self._served: Dict[str, _Served] = {}
        self._tasks: "set[asyncio.Task[Any]]" = set()
        self._reader: Optional["asyncio.Task[None]"] = None
        self._redial: Optional["asyncio.Task[None]"] = None
        self._closing = False
        self._up: Optional[asyncio.Event] = None      # made on the loop, in connect()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=handler_threads, thread_name_prefix="meshzero-handler")

    # ---- connection ------------------------------------------------------

    async def __aenter__(self) -> "AsyncMesh":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True while the API connection is open."""
        return self._ws is not None

    async def connect(self) -> "AsyncMesh":
        """Opens the connection (ConnectionLost if the node cannot be reached)."""
        if self._up is None:
            self._up = asyncio.Event()
        await self._open()
        return self

    async def wait_connected(self, timeout: Optional[float] = None) -> None:
        """Waits until the connection is up (after a reconnect) or raises
        :class:`Timeout`."""
        assert self._up is not None
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except asyncio.TimeoutError:
            raise Timeout("not reconnected to %s within %.1f s" % (self.url, timeout)) from None

    async def _open(self) -> None:
        kw = dict(max_size=self._max_receive, open_timeout=self.timeout, close_timeout=2,
                  ping_interval=20, ping_timeout=20, compression=None)
        try:
            if self._path is not None:
                ws = await websockets.unix_connect(self._path, self._uri, **kw)
            else:
                ws = await websockets.connect(self._uri, **kw)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            raise ConnectionLost("cannot open the API connection to %s: %s" % (self.url, e)) \
                from None
        self._gen += 1
        self._ws = ws
        self._rr.clear()
        self._reader = asyncio.get_running_loop().create_task(self._read(ws, self._gen))
        try:
            st = await self.status()
        except BaseException:
            self._ws = None
            self._gen += 1          # its reader's end is not a loss to act on
            await ws.close()
            raise
        self.node_id = st.id
        lim = st.limits.get("max_message")
        if isinstance(lim, int) and not isinstance(lim, bool) and lim > 0:
            self.max_message = lim
        assert self._up is not None
        self._up.set()

    async def close(self) -> None:
        """Closes the connection; pending calls fail with ConnectionLost and
        streams end. The node unregisters the resources this connection served."""
        self._closing = True
        if self._redial is not None:
            self._redial.cancel()
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            try:
                await self._reader
            except BaseException:
                pass
        self._lost(self._gen, ConnectionLost("the client closed the connection"))
        for subs in list(self._subs.values()):
            for s in subs:
                s.active = False
                s._end(None)
        self._subs.clear()
        self._served.clear()
        for t in list(self._tasks):
            t.cancel()
        self._pool.shutdown(wait=False)

    async def _read(self, ws: Any, gen: int) -> None:
        exc: MeshError = ConnectionLost("the API connection closed")
        try:
            async for msg in ws:
                self._on_message(ws, msg)
        except websockets.ConnectionClosed as e:
            exc = self._closed_error(e)
        except asyncio.CancelledError:
            raise
        except Exception as e:          # never expected; the connection is unusable
            exc = ConnectionLost("the API connection failed: %r" % (e,))
        else:
            exc = self._closed_error(None, ws)
        self._lost(gen, exc)

    def _closed_error(self, e: Any, ws: Any = None) -> MeshError:
        rcvd = getattr(e, "rcvd", None) if e is not None else None
        sent = getattr(e, "sent", None) if e is not None else None
        if rcvd is not None and rcvd.code == 1009 and (sent is None or e.rcvd_then_sent):
            m = _TOO_BIG_RE.search(rcvd.reason or "")
            err: MeshError = TooLarge("the node closed the connection: %s" % rcvd.reason,
                                      data={"limit": int(m.group(1)) if m else None})
            return err
        if sent is not None and sent.code == 1009:
            return ConnectionLost("the node sent a message over this client's limit of %d "
                                  "bytes (max_receive)" % self._max_receive)
        if rcvd is not None:
            return ConnectionLost("the node closed the API connection (%d %s)"
                                  % (rcvd.code, rcvd.reason))
        return ConnectionLost("the API connection to %s was lost" % self.url)

    def _lost(self, gen: int, exc: MeshError) -> None:
        """The connection of generation gen is gone: fail what waited on it."""
        if gen != self._gen:
            return
        self._ws = None
        if self._up is not None:
            self._up.clear()
        limit = exc.data.get("limit") if isinstance(exc, TooLarge) else None
        for rid, (fut, size, _) in list(self._pending.items()):
            if fut.done():
                continue
            if isinstance(exc, TooLarge) and (limit is None or size > limit):
                fut.set_exception(TooLarge(exc.message, data=exc.data))
            else:
                fut.set_exception(ConnectionLost(exc.message if not isinstance(exc, TooLarge)
                                                 else "the connection closed: " + exc.message))
        self._pending.clear()
        self._node_sub.clear()
        if self._closing:
            return
        if self.reconnect:
            if self._redial is None or self._redial.done():
                self._redial = asyncio.get_running_loop().create_task(self._redial_loop())
        else:
            for subs in self._subs.values():
                for s in subs:
                    s._end(ConnectionLost(exc.message))

    async def _redial_loop(self) -> None:
        delay = RECONNECT_FIRST
        while not self._closing:
            try:
                await self._open()
                await self._restore()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("meshzero: reconnect to %s failed: %s", self.url, e)
                if self._ws is not None:
                    await self._ws.close()   # half set up: start over
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _restore(self) -> None:
        """After a reconnect: the subscriptions and served resources again."""
        for pattern in list(self._subs):
            await self._node_subscribe(pattern)
        for rid, s in list(self._served.items()):
            await self._call("register_resource", s.params)

    # ---- requests --------------------------------------------------------

    async def _call(self, method: str, params: Dict[str, Any],
                    timeout: Optional[float] = None,
                    hook: Optional[Callable[[Any], None]] = None) -> Any:
        ws = self._ws
        if ws is None:
            raise ConnectionLost("not connected to %s%s" % (
                self.url, " (reconnecting)" if self.reconnect and not self._closing else ""))
        self._next_id += 1
        rid = self._next_id
        try:
            text = _dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        except (TypeError, ValueError) as e:
            raise BadRequest("%s: params are not JSON: %s" % (method, e)) from None
        size = len(text.encode())
        if size > self.max_message:
            raise TooLarge("%s: request of %d bytes is over the node's max_message of %d bytes"
                           % (method, size, self.max_message),
                           data={"size": size, "limit": self.max_message})
        fut: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self._pending[rid] = (fut, size, hook)
        try:
            try:
                await ws.send(text)
            except websockets.ConnectionClosed as e:
                if not fut.done():
                    raise self._closed_error(e) from None
            wait = self.timeout if timeout is None else timeout
            timer = asyncio.get_running_loop().call_later(wait, _expire, fut, method, wait)
            try:
                return await fut
            finally:
                timer.cancel()
        finally:
            self._pending.pop(rid, None)

    def _on_message(self, ws: Any, msg: Union[str, bytes]) -> None:
        try:
            if not isinstance(msg, str):
                self.stats["ignored_binary"] += 1
                return
            try:
                obj = json.loads(msg)
            except (ValueError, RecursionError):
                self.stats["ignored_non_json"] += 1
                log.warning("meshzero: ignored a message that is not JSON: %.80r", msg)
                return
            if not isinstance(obj, dict):
                self.stats["ignored_malformed"] += 1
                return
            method = obj.get("method")
            if isinstance(method, str):
                self._on_request(ws, obj, method)
            elif "result" in obj or "error" in obj:
                self._on_answer(obj)
            else:
                self.stats["ignored_malformed"] += 1
        except Exception:       # a bug here must not end the reader
            self.stats["dispatch_errors"] += 1
            log.exception("meshzero: handling a message from the node failed")

    def _on_answer(self, obj: Dict[str, Any]) -> None:
        rid = obj.get("id")
        entry = self._pending.get(rid) if isinstance(rid, int) and not isinstance(rid, bool) \
            else None
        if entry is None or entry[0].done():
            self.stats["ignored_unknown_id"] += 1
            return
        fut, _, hook = entry
        if "error" in obj:
            fut.set_exception(error_from_rpc(obj["error"]))
            return
        if hook is not None:
            try:
                hook(obj.get("result"))
            except MeshError as e:
                fut.set_exception(e)
                return
        fut.set_result(obj.get("result"))

    def _on_request(self, ws: Any, obj: Dict[str, Any], method: str) -> None:
        params = obj.get("params")
        if method == "event" and "id" not in obj:
            self._on_event(params)
        elif method == "execute" and isinstance(obj.get("id"), (str, int)):
            self._spawn(self._serve_call(ws, obj["id"], params), "handler call")
        else:
            self.stats["ignored_unknown_method"] += 1
            if "id" in obj:
                self._spawn(self._send_quiet(ws, {
                    "jsonrpc": "2.0", "id": obj.get("id"),
                    "error": {"code": -32601, "message": "method not found: %.64r" % method}}),
                    "answer")

    def _spawn(self, aw: Awaitable[Any], what: str) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)

        def done(t: "asyncio.Task[Any]") -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.stats["callback_errors"] += 1
                log.error("meshzero: %s failed", what, exc_info=t.exception())
        task.add_done_callback(done)

    async def _send_quiet(self, ws: Any, obj: Dict[str, Any]) -> None:
        try:
            await ws.send(_dumps(obj))
        except websockets.ConnectionClosed:
            pass    # the node fails the call itself when the connection closes

    # ---- events ----------------------------------------------------------

    def _on_event(self, params: Any) -> None:
        try:
            ev = Event.from_dict(params)
        except MeshError:
            self.stats["ignored_malformed"] += 1
            return
        # The node sends one notification per matching subscription of this
        # connection, one after the other, without saying which: the k-th copy
        # of a topic goes to the k-th matching pattern.
        pats = [p for p in self._node_sub if topic_matches(p, ev.topic)]
        if not pats:
            self.stats["ignored_unknown_subscription"] += 1
            return
        i = self._rr.get(ev.topic, 0) % len(pats)
        self._rr[ev.topic] = (i + 1) % len(pats)
        for s in list(self._subs.get(pats[i], ())):
            s._deliver(ev)

    async def _node_subscribe(self, pattern: str) -> None:
        def taken(r: Any) -> None:
            # Registered as the answer is read: the node's first notification
            # for it may be the very next message.
            sid = r.get("subscription") if isinstance(r, dict) else None
            if not isinstance(sid, int) or isinstance(sid, bool):
                raise MeshError("malformed subscribe answer: %.200r" % (r,), code="bad_reply")
            self._node_sub[pattern] = sid
            self._rr.clear()
        await self._call("subscribe", {"topic": pattern}, hook=taken)

    async def _subscribe(self, topic: str, callback: Optional[Callback],
                         queue: Optional["asyncio.Queue[Any]"]) -> Subscription:
        if not isinstance(topic, str):
            raise BadRequest("subscribe: topic must be a string")
        sub = Subscription(self, topic, callback, queue)
        first = topic not in self._subs
        self._subs.setdefault(topic, []).append(sub)
        try:
            if first:
                fut = asyncio.get_running_loop().create_future()
                self._subscribing[topic] = fut
                try:
                    await self._node_subscribe(topic)
                finally:
                    self._subscribing.pop(topic, None)
                    fut.set_result(None)
            elif topic in self._subscribing:
                await self._subscribing[topic]      # the first one's answer
                if topic not in self._node_sub:
                    raise ConnectionLost("subscribe %r: the node did not take it" % topic)
        except BaseException:
            sub.active = False
            subs = self._subs.get(topic, [])
            if sub in subs:
                subs.remove(sub)
            if not subs:
                self._subs.pop(topic, None)
            raise
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        if not sub.active:
            return
        sub.active = False
        subs = self._subs.get(sub.topic, [])
        if sub in subs:
            subs.remove(sub)
        sub._end(None)
        if subs:
            return
        self._subs.pop(sub.topic, None)
        sid = self._node_sub.pop(sub.topic, None)
        self._rr.clear()
        if sid is not None and self._ws is not None:
            await self._call("unsubscribe", {"subscription": sid})

    # ---- serving ---------------------------------------------------------

    async def _serve_call(self, ws: Any, pid: Any, params: Any) -> None:
        answer: Dict[str, Any] = {"jsonrpc": "2.0", "id": pid}
        try:
            if not isinstance(params, dict) or not isinstance(params.get("resource_id"), str) \
                    or not isinstance(params.get("method"), str):
                raise BadRequest("malformed execute request from the node")
            served = self._served.get(params["resource_id"])
            if served is None:
                raise HandlerError("resource %r is not served by this client"
                                   % params["resource_id"])
            args = (params["method"], params.get("params") if isinstance(params.get("params"),
                    dict) else {}, params.get("caller") if isinstance(params.get("caller"),
                                                                       str) else "")
            if inspect.iscoroutinefunction(served.handler):
                result = await served.handler(*args)
            else:
                result = await asyncio.get_running_loop().run_in_executor(
                    self._pool, lambda: served.handler(*args))
                if inspect.isawaitable(result):
                    result = await result
            answer["result"] = result
            try:
                text = _dumps(answer)
            except (TypeError, ValueError) as e:
                raise HandlerError("the handler's result is not JSON: %s" % e) from None
            if len(text.encode()) > self.max_message:
                raise HandlerError("the handler's result of %d bytes is over the node's "
                                   "max_message of %d bytes" % (len(text.encode()),
                                                                self.max_message))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            answer.pop("result", None)
            if isinstance(e, MeshError) and e.code in _HANDLER_CODES:
                code, message = e.code, e.message
            elif isinstance(e, MeshError) and type(e) is HandlerError:
                code, message = "handler_error", e.message
            else:
                code, message = "handler_error", "%s: %s" % (type(e).__name__, e)
            answer["error"] = {"code": -32000, "message": message[:4000], "data": {"code": code}}
            text = _dumps(answer)
        try:
            await ws.send(text)
        except websockets.ConnectionClosed:
            pass

    # ---- the seed's API --------------------------------------------------

    async def register_resource(self, resource_id: str, resource_type: str,
                                capabilities: Optional[Sequence[str]] = None,
                                owner: Optional[str] = None,
                                metadata: Optional[Dict[str, Any]] = None,
                                handler: Optional[Handler] = None,
                                methods: Optional[Sequence[str]] = None) -> Resource:
        """Registers (or updates: version + 1) a resource hosted by the node.

        With ``handler``, this connection serves its calls:
        ``handler(method, params, caller)`` returns a JSON-able result or
        raises (:class:`BadRequest`, :class:`Busy` or :class:`Timeout` keep
        their code, anything else is a ``handler_error`` with its text).
        ``methods`` lists the methods it accepts (others: ``bad_request``).
        The resource is unregistered when the connection closes.
        """
        params: Dict[str, Any] = {"resource_id": resource_id, "resource_type": resource_type}
        if capabilities is not None:
            if isinstance(capabilities, str):
                raise BadRequest("capabilities must be a list of strings, not one string")
            params["capabilities"] = list(capabilities)
        if owner is not None:
            params["owner"] = owner
        if metadata is not None:
            params["metadata"] = metadata
        if handler is not None:
            if not callable(handler):
                raise BadRequest("handler must be callable as handler(method, params, caller)")
            params["handler"] = True
            if methods is not None:
                params["methods"] = list(methods)
        rec = Resource.from_dict(await self._call("register_resource", params))
        if handler is not None:
            self._served[resource_id] = _Served(params, handler)
        return rec

    async def unregister_resource(self, resource_id: str) -> None:
        """Removes a resource this node hosts (NotFound if it has none by that id)."""
        self._served.pop(resource_id, None)
        await self._call("unregister_resource", {"resource_id": resource_id})

    async def query_resources(self, resource_type: Optional[str] = None,
                              capabilities: Optional[Sequence[str]] = None,
                              owner: Optional[str] = None, location: Optional[str] = None,
                              limit: Optional[int] = None) -> List[Resource]:
        """Records in the node's directory with the type, ALL the
        capabilities, the owner and the location (``"local"``/``"remote"``)
        given; at most ``limit`` (the node caps it at 500)."""
        params: Dict[str, Any] = {}
        for k, v in (("resource_type", resource_type), ("owner", owner),
                     ("location", location), ("limit", limit)):
            if v is not None:
                params[k] = v
        if capabilities is not None:
            if isinstance(capabilities, str):
                raise BadRequest("capabilities must be a list of strings, not one string")
            params["capabilities"] = list(capabilities)
        r = await self._call("query_resources", params)
        if not isinstance(r, list):
            raise MeshError("malformed query answer: %.200r" % (r,), code="bad_reply")
        return [Resource.from_dict(x) for x in r]

    async def connect_to_peer(self, url: str) -> str:
        """Links the node to the peer at ``url`` (re-dialed when lost); returns
        the peer's node id once the hello completed."""
        r = await self._call("connect_to_peer", {"url": url})
        if not isinstance(r, dict) or not isinstance(r.get("peer"), str):
            raise MeshError("malformed connect_to_peer answer: %.200r" % (r,), code="bad_reply")
        return r["peer"]

    async def subscribe(self, topic: str, callback: Callback) -> Subscription:
        """Calls ``callback(event)`` for every event of ``topic`` (a topic,
        ``prefix.*`` or ``*``); returns the :class:`Subscription`."""
        if not callable(callback):
            raise BadRequest("subscribe: callback must be callable as callback(event)")
        return await self._subscribe(topic, callback, None)

    def events(self, topic: str = "*", maxsize: int = EVENT_QUEUE) -> EventStream:
        """An :class:`EventStream` of ``topic``'s events
        (``async for event in mesh.events("resource.*")``)."""
        return EventStream(self, topic, maxsize)

    async def publish(self, topic: str, data: Any = None) -> None:
        """Publishes an event to every node's subscribers (this node's too)."""
        await self._call("publish", {"topic": topic, "data": data})

    async def execute_remote(self, resource_id: str, method: str,
                             params: Optional[Dict[str, Any]] = None,
                             timeout: Optional[float] = None,
                             agreement: Optional[Dict[str, Any]] = None) -> Any:
        """Calls ``method`` of a resource wherever in the mesh it is hosted and
        returns the handler's result. ``timeout`` in seconds (node default 30);
        ``agreement`` the document for resources that require one. Raises
        NotFound, Unreachable, Timeout, HandlerError, Busy, Denied, BadRequest,
        TooLarge or ConnectionLost."""
        p: Dict[str, Any] = {"resource_id": resource_id, "method": method,
                             "params": {} if params is None else params}
        if timeout is not None:
            p["timeout"] = timeout
        if agreement is not None:
            p["agreement"] = agreement
        wait = (DEFAULT_EXEC_TIMEOUT if timeout is None else timeout) + EXEC_SLACK
        return await self._call("execute_remote", p, timeout=wait)

    async def peers(self) -> List[Peer]:
        """The node's linked peers."""
        r = await self._call("peers", {})
        if not isinstance(r, list):
            raise MeshError("malformed peers answer: %.200r" % (r,), code="bad_reply")
        return [Peer.from_dict(x) for x in r]

    async def status(self) -> Status:
        """The node's status (id, peers, resource counts, counters, limits)."""
        return Status.from_dict(await self._call("status", {}))

    async def call(self, method: str, params: Optional[Dict[str, Any]] = None,
                   timeout: Optional[float] = None) -> Any:
        """Any other API method (docs/PROTOCOL.md), raw JSON in and out."""
        return await self._call(method, params or {}, timeout)


def _expire(fut: "asyncio.Future[Any]", method: str, wait: float) -> None:
    if not fut.done():
        fut.set_exception(Timeout("%s: no answer from the node within %.1f s" % (method, wait)))
