#!/usr/bin/python3
"""A handler agent: hosts a resource on a node and serves its calls from
Python until Ctrl-C (the node unregisters it when this script exits).

    PYTHONPATH=python python/examples/handler_agent.py --node ws://127.0.0.1:8796

Then, from any node of the mesh:

    meshzero exec text.tools upper '{"text":"hello"}' --node ws://127.0.0.1:8766
"""
import argparse
import asyncio
import signal

import meshzero


async def handle(method, params, caller):
    """handler(method, params, caller): a JSON-able result, or raise."""
    text = params.get("text")
    if not isinstance(text, str):
        raise meshzero.BadRequest("params.text must be a string")
    if method == "upper":
        return {"text": text.upper()}
    if method == "words":
        await asyncio.sleep(0)          # async handlers may await anything
        return {"words": len(text.split())}
    raise meshzero.BadRequest("unknown method %r" % method)


async def main(url, resource_id):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # reconnect=True: if the node restarts, the resource is served again
    async with meshzero.AsyncMesh(url, reconnect=True) as mesh:
        rec = await mesh.register_resource(
            resource_id=resource_id, resource_type="tool", capabilities=["text"],
            owner="examples", metadata={"lang": "python"}, handler=handle,
            methods=["upper", "words"])
        print("serving %s (version %d) on node %s; Ctrl-C stops"
              % (rec.resource_id, rec.version, rec.node[:12]), flush=True)
        await stop.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Serve a text tool from Python.")
    ap.add_argument("--node", default=None, help="API URL (default $MESHZERO_API or "
                    "ws://127.0.0.1:8766)")
    ap.add_argument("--id", default="text.tools", help="resource id (default text.tools)")
    a = ap.parse_args()
    asyncio.run(main(a.node, a.id))
