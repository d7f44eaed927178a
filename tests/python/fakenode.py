"""A fake node API made with websockets.serve, for the client's unit tests.

It answers `status` like a node; every other request goes to the test's
`on_request(fake, ws, req)`, which may answer (or not) with fake.reply /
fake.error / raw ws.send. Everything the client sent is kept in `received`.
"""
import asyncio
import json

import websockets

STATUS = {"id": "f" * 64, "listen": "ws://127.0.0.1:1", "api": "ws://127.0.0.1:2",
          "uptime_s": 1, "peers": 0, "resources": {"local": 0, "remote": 0},
          "nodes_known": 0, "routes": 0, "counters": {}, "limits": {"max_message": 1048576}}


class FakeNode:
    def __init__(self, on_request=None, status=None):
        self.on_request = on_request
        self.status = dict(STATUS if status is None else status)
        self.received = []          # parsed messages from the client
        self.raw = []               # their texts
        self.conns = []             # open server-side connections
        self.connects = 0
        self.server = None
        self.url = None
        self.got = asyncio.Condition()

    async def start(self):
        self.server = await websockets.serve(self._handle, "127.0.0.1", 0, max_size=None,
                                             compression=None)
        port = self.server.sockets[0].getsockname()[1]
        self.url = "ws://127.0.0.1:%d" % port
        return self

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, ws, path=None):
        self.connects += 1
        self.conns.append(ws)
        try:
            async for text in ws:
                self.raw.append(text)
                msg = json.loads(text)
                self.received.append(msg)
                async with self.got:
                    self.got.notify_all()
                if msg.get("method") == "status":
                    await self.reply(ws, msg, self.status)
                elif self.on_request is not None and "method" in msg:
                    r = self.on_request(self, ws, msg)
                    if asyncio.iscoroutine(r):
                        await r
        except websockets.ConnectionClosed:
            pass
        finally:
            self.conns.remove(ws)

    async def reply(self, ws, req, result):
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}))

    async def error(self, ws, req, code, message, data=None):
        e = {"code": code, "message": message}
        if data is not None:
            e["data"] = data
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": req["id"], "error": e}))

    def sent(self, method):
        return [m for m in self.received if m.get("method") == method]

    async def wait_for(self, pred, timeout=5.0):
        """Waits until pred() holds, re-checked whenever the client sends."""
        async def loop():
            async with self.got:
                while not pred():
                    await self.got.wait()
        await asyncio.wait_for(loop(), timeout)
