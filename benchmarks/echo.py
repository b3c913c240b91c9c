"""The same-run ceiling: a bare anyio newline echo server on a Unix socket.

It does what vtd's connection layer does least of (read a line, write a
line) and nothing else, so read figures can be printed as a fraction of
what this machine's Python can do at all. Run as ``python -m benchmarks.echo PATH``.
"""

from __future__ import annotations

import sys

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream


async def echo(stream: SocketStream) -> None:
    """Answer each line on one connection with the same line."""
    reader = BufferedByteReceiveStream(stream)
    async with stream:
        try:
            while True:
                await stream.send(await reader.receive_until(b"\n", 1 << 20) + b"\n")
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            return


async def serve(path: str) -> None:
    """Echo on every connection to the socket at ``path``, until killed."""
    listener = await anyio.create_unix_listener(path)
    await listener.serve(echo)


if __name__ == "__main__":
    anyio.run(serve, sys.argv[1])
