#!/usr/bin/python3
"""An event watcher: prints every event of a topic pattern as one JSON line
(default resource.*: resources added, updated and removed anywhere in the
mesh) until Ctrl-C or --count events.

    PYTHONPATH=python python/examples/watch_events.py --node ws://127.0.0.1:8766 'resource.*'
"""
import argparse
import asyncio
import json

import meshzero


async def main(url, topic, count):
    async with meshzero.AsyncMesh(url, reconnect=True) as mesh:
        seen = 0
        async with mesh.events(topic) as stream:
            print("watching %s on node %s" % (topic, mesh.node_id[:12]), flush=True)
            async for event in stream:
                print(json.dumps({"topic": event.topic, "source": event.source,
                                  "data": event.data}), flush=True)
                seen += 1
                if count and seen >= count:
                    return


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Print a topic's events as JSON lines.")
    ap.add_argument("topic", nargs="?", default="resource.*",
                    help="a topic, prefix.* or * (default resource.*)")
    ap.add_argument("--node", default=None, help="API URL (default $MESHZERO_API or "
                    "ws://127.0.0.1:8766)")
    ap.add_argument("--count", type=int, default=0, help="stop after N events")
    a = ap.parse_args()
    try:
        asyncio.run(main(a.node, a.topic, a.count))
    except KeyboardInterrupt:
        pass
