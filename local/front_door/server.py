"""A threaded HTTP server on 127.0.0.1 for one WSGI app (the twin's API, the user pool's domain), stopped with the
twin."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server


class _KeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # clients keep their connections, as with API Gateway

    def log_request(self, *args: Any, **kwargs: Any) -> None:  # the gateway writes its own access log
        pass


class WsgiServer:
    def __init__(self, app: Any, port: int = 0, name: str = "wsgi"):
        self._server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_KeepAliveHandler)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def by_path(routes: dict[str, Callable], default: Callable) -> Callable:
    """One WSGI app from several: the app of the request's exact path, else ``default`` (one port, several
    endpoints)."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return routes.get(environ.get("PATH_INFO", ""), default)(environ, start_response)

    return app
