"""The reference multi-worker ASGI server: one listening socket, N worker processes, a selectable way
of getting the socket to them (`servers.strategies`). Run it with `python -m servers APP ...`."""
