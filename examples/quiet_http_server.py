"""A stand-in HTTP service for the examples.

Python's http.server on 127.0.0.1:PORT, serving this folder, without the
log line it prints for every request (plain `python3 -m http.server` would
print every health probe): `python3 quiet_http_server.py PORT`.
"""

import http.server
import sys


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


port = int(sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), QuietHandler)
print(f"serving on 127.0.0.1:{port}", flush=True)
server.serve_forever()
