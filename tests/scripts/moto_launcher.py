"""Starts moto server (DynamoDB, KMS, ...) on a free loopback port for credvault's local stack.

Prints the endpoint URL on the first line of stdout, then serves until its stdin closes: the Rust
process that started it holds the other end, so moto never outlives it.

Requests are accepted concurrently but served one at a time. DynamoDB's conditional writes are atomic;
moto's are a read, a check and a write, so two conditional UpdateItems served in two threads at once
can both pass their condition (two instances would both claim one refresh lease, which DynamoDB never
allows). moto is one Python process under one interpreter lock, so serving one request at a time costs
little and gives the atomicity the vault relies on.
"""
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


class OneAtATime:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # The whole answer is made inside the lock: moto's answers are small and in memory.
            return list(self.app(environ, start_response))


port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
app = OneAtATime(DomainDispatcherApplication(create_backend_app))
server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
host, port = server.server_address[:2]
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()
server.shutdown()
