"""The karaoke player's web page: a remote for a phone or a browser, served by aiohttp on its own thread.

One small state/command API, which the page is a thin client of:

- ``GET /`` the page (``web/player.html``: no external files, it works offline);
- ``GET /api/state`` the player's state as JSON; ``POST /api/command`` ``{"command": NAME, "value": X}``;
- ``GET /api/ws`` a WebSocket that pushes the state ``UPDATES_PER_SECOND`` times a second and takes commands.

Every request must carry the session's random token (``?token=`` in the printed URL, or the ``X-Token`` header):
without it the answer is 403. A page on loopback asks for it too: any web site the user visits could otherwise
send commands to a port on 127.0.0.1. The audio path never waits for this thread: commands only set values.
"""
from __future__ import annotations

import asyncio
import json
import math
import secrets
import socket
import threading
from importlib import resources

UPDATES_PER_SECOND = 10
COMMANDS = ("toggle_pause", "pause", "resume", "seek", "seek_to", "next", "previous", "play_song", "set_voice",
            "voice_up", "voice_down", "set_key", "key_up", "key_down", "quit")
DEFAULT_PORT = 8765


class WebError(RuntimeError):
    """The web page cannot be served (aiohttp missing, address in use, bad address)."""


def parse_address(text: str | None) -> tuple[str, int]:
    """``[HOST:]PORT`` (or None: the default) -> ``(host, port)``; raises WebError."""
    if not text:
        return "127.0.0.1", DEFAULT_PORT
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise WebError(f"--web {text}: give [HOST:]PORT, e.g. 8765 or 0.0.0.0:8765") from None
    if not 0 <= number <= 65535:
        raise WebError(f"--web {text}: a port is 0 to 65535")
    return host, number


def apply_command(controls, command: str, value=None) -> None:
    """Run one command of ``COMMANDS`` on the player's controls; raises ValueError for a bad one."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}")
    if command in ("seek", "seek_to", "set_voice", "set_key", "play_song"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{command} needs a number, not {value!r}") from None
        if math.isnan(number) or (math.isinf(number) and not (command == "set_voice" and number < 0)):
            raise ValueError(f"{command} needs a finite number")
        if command == "play_song":
            controls.play_song(int(number))
        else:
            getattr(controls, command)(number)
    elif command in ("pause", "resume"):
        controls.set_paused(command == "pause")
    else:
        getattr(controls, command)()


class WebRemote:
    """Serves the page for ``player`` on ``host:port`` (port 0: any free one) from a thread of its own."""

    def __init__(self, player, host: str = "127.0.0.1", port: int = DEFAULT_PORT):
        self.player, self.host, self.port = player, host, port
        self.token = secrets.token_urlsafe(16)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()
        self.failure: str | None = None
        self.thread = threading.Thread(target=self._serve, name="stream-dc web", daemon=True)

    def start(self, timeout: float = 10.0) -> str:
        """Start serving; returns the URL to open. Raises WebError."""
        self.thread.start()
        if not self.started.wait(timeout):
            raise WebError("the web page did not start")
        if self.failure:
            raise WebError(self.failure)
        return self.url

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = _lan_address()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/?token={self.token}"

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    # -- the server's thread --------------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            from aiohttp import web
        except ImportError:
            self.failure = "--web needs aiohttp: pip install aiohttp"
            self.started.set()
            return
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self._app(web), access_log=None, handle_signals=False)
        try:
            self.loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            self.loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except OSError as error:
            self.failure = f"cannot serve the web page on {self.host}:{self.port} ({error.strerror or error})"
            self.started.set()
            return
        self.started.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(runner.cleanup())
            self.loop.close()

    def _app(self, web):
        page = resources.files("stream_dc.apps").joinpath("web/player.html").read_text(encoding="utf-8")

        @web.middleware
        async def token_check(request, handler):
            given = request.query.get("token") or request.headers.get("X-Token") or ""
            if not secrets.compare_digest(given.encode(errors="replace"), self.token.encode()):
                return web.Response(status=403, text="403: this page needs the token of the URL stream-dc printed\n")
            return await handler(request)

        async def index(request):
            return web.Response(text=page, content_type="text/html",
                                headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

        async def state(request):
            return web.json_response(self.player.state.snapshot(), dumps=_dumps)

        async def command(request):
            try:
                body = await request.json()
                apply_command(self.player.controls, str(body.get("command")), body.get("value"))
            except (ValueError, AttributeError, json.JSONDecodeError) as error:
                return web.json_response({"error": str(error)}, status=400)
            return web.json_response(self.player.state.snapshot(), dumps=_dumps)

        async def websocket(request):
            socket_ = web.WebSocketResponse(heartbeat=20)
            await socket_.prepare(request)
            pusher = asyncio.ensure_future(self._push(socket_))
            try:
                async for message in socket_:
                    try:
                        body = json.loads(message.data)
                        apply_command(self.player.controls, str(body.get("command")), body.get("value"))
                    except (ValueError, AttributeError, TypeError) as error:
                        await socket_.send_str(json.dumps({"error": str(error)}))
            finally:
                pusher.cancel()
            return socket_

        app = web.Application(middlewares=[token_check])
        app.add_routes([web.get("/", index), web.get("/api/state", state), web.post("/api/command", command),
                        web.get("/api/ws", websocket)])
        return app

    async def _push(self, socket_) -> None:
        try:
            while not socket_.closed:
                await socket_.send_str(_dumps(self.player.state.snapshot()))
                await asyncio.sleep(1.0 / UPDATES_PER_SECOND)
        except (ConnectionError, RuntimeError):  # the page went away
            pass


def _dumps(value) -> str:
    """JSON without the NaN and Infinity that browsers' JSON.parse refuses."""
    def clean(item):
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {k: clean(v) for k, v in item.items()}
        if isinstance(item, list):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value))


def _lan_address() -> str:
    """This machine's address on its local network, as a phone would reach it (127.0.0.1 when there is none)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()
