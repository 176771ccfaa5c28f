"""Print every webhook request that arrives, for trying action-triggers out.

Listens on 0.0.0.0:8000 (or the port given as the first argument) and responds
to every POST, PUT, PATCH and DELETE with 204. Each request is printed as one block:
the request line, the Standard Webhooks headers and the body, pretty-printed when
it is JSON. Not for production: it accepts anything and verifies no signature.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookPrinter(BaseHTTPRequestHandler):
    """Print each request and respond with 204 No Content."""

    def _print_and_respond(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        lines = [f"{self.command} {self.path}"]
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "authorization"):
            value = self.headers.get(name)
            if value is not None:
                lines.append(f"  {name}: {value}")
        text = body.decode("utf-8", errors="replace")
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
        lines.append(text)
        print("\n".join(lines), flush=True)
        self.send_response(204)
        self.end_headers()

    do_POST = _print_and_respond
    do_PUT = _print_and_respond
    do_PATCH = _print_and_respond
    do_DELETE = _print_and_respond

    def do_GET(self):
        """Respond with 200, so a health check can tell that the receiver runs."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format, *args):
        """Silence the default access log line; the block above replaces it."""


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = ThreadingHTTPServer(("0.0.0.0", port), WebhookPrinter)
    print(f"demo receiver listening on 0.0.0.0:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
