"""The end-to-end tests' webhook receiver (tests/e2e/monitor.sh and
runbook.sh): every POST's JSON body, one line each, appended to
/root/alerts.jsonl (which a test may empty) and /root/all-alerts.jsonl."""
import http.server, json
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.headers["Content-Type"] == "application/json"
        for name in ("/root/alerts.jsonl", "/root/all-alerts.jsonl"):
            with open(name, "a") as f:
                f.write(json.dumps(json.loads(body)) + "\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", 8099), Hook).serve_forever()
