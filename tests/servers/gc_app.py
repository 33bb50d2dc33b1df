"""A test app whose body says whether the worker's cyclic garbage collector is on (stdlib only).

The reference server's spawned and exec'd workers import with the collector off and must turn it back on
before the app runs: both lifespan startup and every request report gc.isenabled().
"""

import gc
import os

STATE = {"lifespan": "not run"}


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                STATE["lifespan"] = str(gc.isenabled())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = "lifespan={} request={}".format(STATE["lifespan"], gc.isenabled()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"%d" % len(body)), (b"x-worker-pid", b"%d" % os.getpid())],
        }
    )
    await send({"type": "http.response.body", "body": body})
