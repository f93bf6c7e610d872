"""A local stand-in for the platform's registration endpoints and for
CloudFormation's response URL, used by scripts/invoke-local.sh.

POST /<service>: 503 when the body's project_id is listed in the file named by
argv[2] (one id per line), else 201 with an id and endpoint (also for
POST /<service>/<project>/suspend and .../resume).
DELETE /<service>/<project>: 204.
PUT /cloudformation-response: records the body in argv[3] and answers 200.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, FAILING, CFN_LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    def _body(self):
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_POST(self):
        body = json.loads(self._body() or b"{}")
        try:
            failing = set(open(FAILING).read().split())
        except FileNotFoundError:
            failing = set()
        if body.get("project_id") in failing:
            self.send_response(503)
            self.end_headers()
            return
        service = self.path.strip("/")
        reply = json.dumps({"id": f"{service}-{body.get('project_id', '')[:8]}", "endpoint": f"https://{service}.local.test"}).encode()
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_DELETE(self):
        self.send_response(204)
        self.end_headers()

    def do_PUT(self):
        with open(CFN_LOG, "ab") as log:
            log.write(self._body() + b"\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
