"""Starts moto server (DynamoDB, KMS, ...) on a free loopback port for credvault's local stack.

Prints the endpoint URL on the first line of stdout, then serves until its stdin closes: the Rust
process that started it holds the other end, so moto never outlives it.
"""
import sys

from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()
server.stop()
