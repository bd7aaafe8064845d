"""A push gateway for the tests: it speaks the Push Gateway API, checks every request against
the spec's schema (spec/push_notifier.yaml: matrix-spec v1.19's
data/api/push-gateway/push_notifier.yaml, unchanged) and keeps what it was
sent for the test to read at GET /received.

Pushkeys starting with "reject" are answered as rejected; those starting with "flaky" fail
with a 500 the first time they are pushed to.

Usage: push_gateway.py <push_notifier.yaml> [port]; prints the port it listens on.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import yaml

with open(sys.argv[1]) as spec_file:
    SPEC = yaml.safe_load(spec_file)
NOTIFY_PATH = SPEC["servers"][0]["variables"]["basePath"]["default"] + "/notify"
OPERATION = SPEC["paths"]["/notify"]["post"]
SCHEMA = OPERATION["requestBody"]["content"]["application/json"]["schema"]

LOCK = threading.Lock()
RECEIVED = []
ERRORS = []
FAILED_ONCE = set()


class Gateway(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != NOTIFY_PATH:
            self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": self.path})
            return
        try:
            request = json.loads(body)
            jsonschema.validate(request, SCHEMA)
        except Exception as error:  # noqa: BLE001 - any failure is the test's finding
            with LOCK:
                ERRORS.append(str(error))
            self.reply(400, {"errcode": "M_BAD_JSON", "error": str(error)})
            return
        keys = [device["pushkey"] for device in request["notification"]["devices"]]
        with LOCK:
            flaky = [k for k in keys if k.startswith("flaky") and k not in FAILED_ONCE]
            FAILED_ONCE.update(flaky)
            if not flaky:
                RECEIVED.append(request)
        if flaky:
            self.reply(500, {"errcode": "M_UNKNOWN", "error": "try again"})
            return
        self.reply(200, {"rejected": [k for k in keys if k.startswith("reject")]})

    def do_GET(self):
        with LOCK:
            self.reply(200, {"received": RECEIVED, "errors": ERRORS})

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0), Gateway)
print(server.server_address[1], flush=True)
server.serve_forever()
