"""The test peers' shared life cycle: an ASGI app served by uvicorn in a daemon thread, on a loopback socket
bound before the thread starts, so that sync tests, async tests and a bot in a subprocess can all reach it."""

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp


class ThreadedServer:
    """Bind with the constructor, `start(app)`, `stop()`. The app's lifespan must set `ready` once it runs."""

    def __init__(self, name: str, backlog: int = 128) -> None:
        self.name = name
        self.ready = threading.Event()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it; without it, every response waits ~40 ms on the client's delayed ACK.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(backlog)  # connections queue up from here on, even before uvicorn accepts them
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def start(self, app: ASGIApp) -> None:
        """Serve `app`; returns once its lifespan set `ready`, or raises when it did not start within 10 s."""
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-{self.port}", daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout=10) or self._failure is not None:
            self.stop()
            raise RuntimeError(f"the {self.name} did not start: {self._failure!r}")

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the server's event loop, from any thread; nothing happens once the loop is gone."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(callback)

    def drop(self, client: tuple[str, int] | None) -> bool:
        """Close the connection from `client` (an ASGI scope's "client") without answering; call it from the app,
        on the server's loop. False when no such connection is open."""
        if self._server is None or client is None:
            return False
        for connection in list(self._server.server_state.connections):
            if getattr(connection, "client", None) == tuple(client):
                connection.transport.close()
                return True
        return False

    def stop(self) -> None:
        """Stop serving (waiting at most 15 s for the thread) and close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                raise RuntimeError(f"the {self.name} did not stop within 15 s")
        self._socket.close()

    def _run(self) -> None:
        assert self._server is not None
        server = self._server

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[self._socket])

        try:
            asyncio.run(serve())
        except BaseException as exc:
            self._failure = exc
        finally:
            self.ready.set()
