#!/usr/bin/python3
"""The design note's Python snippets, as written, against the square mesh
(A-B, A-C, B-D, C-D; no A-D link) that `make demo` builds.

D registers agent123 and serves its calls from this script; A, two hops
away, queries it, subscribes to resource.added and executes it.

    python/examples/seed.py --a ws://127.0.0.1:8766 --d ws://127.0.0.1:8796 \
        --peer ws://127.0.0.1:8785

Run from the source tree with PYTHONPATH=python (or after
`pip install ./python`). Only the URLs differ from the note: --peer stands for its
"ws://peer1.example.com:8765" (a node A can reach; the default is C).
"""
import argparse
import json
import sys
import threading

import meshzero


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default="ws://127.0.0.1:8766", help="node A's API URL")
    ap.add_argument("--d", default="ws://127.0.0.1:8796", help="node D's API URL")
    ap.add_argument("--peer", default="ws://127.0.0.1:8785",
                    help="a peer URL for connect_to_peer (default: C's listener)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for events")
    args = ap.parse_args()

    # ---- on D: the note's "Resource Discovery" snippet ----
    mesh = meshzero.connect(args.d)
    d = mesh

    # Register a resource
    mesh.register_resource(
        resource_id="agent123",
        resource_type="agent",
        capabilities=["image_processing"]
    )

    # Query resources
    resources = mesh.query_resources(
        resource_type="agent",
        capabilities=["image_processing"]
    )
    print("D sees:", [r.resource_id for r in resources])

    # D serves agent123's calls from here on (the same registration, now
    # with a handler: the record's version goes up by one).
    def process_image(method, params, caller):
        return {"processed": params.get("image_url"), "by": "python on D",
                "caller": caller[:12]}
    d.register_resource(resource_id="agent123", resource_type="agent",
                        capabilities=["image_processing"], handler=process_image)

    # ---- on A: the note's "P2P Communication" snippet ----
    mesh = meshzero.connect(args.a)
    added = threading.Event()

    def on_resource_added(event):
        print("A got %s: %s v%s from node %s" % (event.topic, event.data["resource_id"],
                                                event.data["version"], event.source[:12]))
        added.set()

    # the record must have reached A (it travels as a broadcast)
    wait_until(lambda: mesh.query_resources(resource_type="agent",
                                               capabilities=["image_processing"]), args.timeout)

    # Connect to peers
    mesh.connect_to_peer(args.peer)

    # Event subscription
    mesh.subscribe("resource.added", on_resource_added)

    # Remote execution
    result = mesh.execute_remote(
        resource_id="agent123",
        method="process_image",
        params={"image_url": "https://example.com/image.jpg"}
    )
    print("A executed agent123.process_image:", json.dumps(result))

    # something new on D raises resource.added at A
    d.register_resource(resource_id="agent456", resource_type="agent",
                        capabilities=["text_analysis"])
    ok = added.wait(args.timeout)
    d.unregister_resource("agent456")
    mesh.close()
    d.close()
    if not ok:
        print("A never got resource.added", file=sys.stderr)
        return 1
    return 0


def wait_until(cond, timeout):
    """Polls cond() until it is true (a record spreading takes milliseconds)."""
    import time
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit("agent123 did not reach A within %.0f s" % timeout)
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
