"""A tiny app for ``seawall up``'s tests: it listens where ``SEAWALL_APP_PORT`` says,
answers ``GET /`` with its service and instance, and ``GET /call/NAME`` by calling
service NAME through its sidecar (``HTTP_PROXY``, which urllib honours)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        status = 200
        if self.path.startswith("/call/"):
            name = self.path[len("/call/") :]
            try:
                with urllib.request.urlopen(f"http://{name}/", timeout=5) as r:  # noqa: S310
                    body = r.read()
            except urllib.error.HTTPError as exc:  # the mesh's answer, passed on
                status, body = exc.code, exc.read()
            except OSError as exc:
                status, body = 502, json.dumps({"error": str(exc)}).encode()
        else:
            me = {"service": os.environ["SEAWALL_SERVICE"],
                  "instance": os.environ["SEAWALL_INSTANCE"],
                  "greeting": os.environ.get("GREETING", "hello")}  # fmt: skip
            body = json.dumps(me).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        print(f"{self.command} {self.path}", flush=True)


def main() -> None:
    port = int(os.environ["SEAWALL_APP_PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"{os.environ['SEAWALL_INSTANCE']} listening on :{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
