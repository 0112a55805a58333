"""Measures each function binary's time from process start to its first answered event, through a
minimal Lambda runtime API (the next-invocation and response endpoints a Rust runtime uses).

usage: lambda_init.py BINARY EVENT_JSON [BINARY EVENT_JSON ...]   (binaries built for this machine)
The functions read their usual CREDVAULT_* settings from the environment; the events used here
(discovery, an anonymous request) need no AWS call, so the figure is start-up, not network.
"""
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def measure(binary, event):
    answered = threading.Event()
    served = {"status": None}

    class RuntimeApi(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.endswith("/invocation/next") and not answered.is_set():
                body = json.dumps(event).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "init-measure")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:x")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                time.sleep(5)
                self.send_response(500)
                self.end_headers()

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            served["status"] = json.loads(self.rfile.read(length) or b"{}").get("statusCode")
            self.send_response(202)
            self.end_headers()
            answered.set()

    server = ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
               AWS_LAMBDA_FUNCTION_NAME=os.path.basename(binary), AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
               AWS_LAMBDA_FUNCTION_VERSION="1")
    started = time.perf_counter()
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = answered.wait(30)
    elapsed = time.perf_counter() - started
    process.kill()
    server.shutdown()
    return elapsed if ok else None, served["status"]


def main():
    args = sys.argv[1:]
    for binary, event_path in zip(args[0::2], args[1::2]):
        with open(event_path, encoding="utf-8") as f:
            event = json.load(f)
        runs = [measure(binary, event) for _ in range(5)]
        times = sorted(t for t, _ in runs if t is not None)
        status = runs[0][1]
        if not times:
            print(f"{os.path.basename(binary)}: no answer")
            continue
        print(f"{os.path.basename(binary):18} start to first answer: median {times[len(times) // 2] * 1000:.1f} ms (status {status}, {len(times)} runs)")


main()
