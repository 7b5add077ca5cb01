"""A TCP proxy in front of a real server, for network faults no server can be asked to make:
a database that stops answering (connections refused), and a reply lost on the way back."""

from __future__ import annotations

import asyncio
import contextlib

from herald.core.redis import free_port


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._lose_reply_after: bytes | None = None
        self.lost_replies = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones: the server is gone."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def lose_reply_after(self, marker: bytes) -> None:
        """The next client message containing `marker` reaches the server, and then the
        connection is cut before the server's answer gets back."""
        self._lose_reply_after = marker

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        upstream = asyncio.create_task(self._upstream(client_r, server_w, client_w))
        downstream = asyncio.create_task(self._pump(server_r, client_w))
        await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        client_w.transport.abort()
        await asyncio.wait({upstream}, timeout=0.1)  # the lost reply may end downstream first
        if upstream.done() and upstream.result():
            await asyncio.sleep(0.5)  # a lost reply: let the server act on what it was sent
        for task in (upstream, downstream):
            task.cancel()
        server_w.transport.abort()
        self._writers -= {client_w, server_w}

    async def _upstream(
        self,
        client_r: asyncio.StreamReader,
        server_w: asyncio.StreamWriter,
        client_w: asyncio.StreamWriter,
    ) -> bool:
        """Client to server; True when it stopped to lose the reply to the marked message."""
        with contextlib.suppress(OSError):
            while data := await client_r.read(65536):
                marker = self._lose_reply_after
                lose = marker is not None and marker in data
                if lose:
                    self._lose_reply_after = None
                    self.lost_replies += 1
                    client_w.transport.abort()  # the client will never hear the answer
                server_w.write(data)
                await server_w.drain()
                if lose:
                    return True
        return False

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
