#!/usr/bin/env python3
"""A threaded HTTP/1.1 server running `git http-backend` as CGI: the baseline that
Benchmarks/git-bench.sh measures raftd's Git HTTP service against.

    python3 Benchmarks/git-http-backend.py PORT PROJECT_ROOT

Request bodies (Content-Length or chunked) are read whole and given to the CGI on its
standard input; its answer is read whole and sent with a Content-Length. Fine for the
benchmark's small pushes; not a production server.
"""
import http.server
import os
import subprocess
import sys

ROOT = sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def run(self):
        data = self.body() if self.command == "POST" else b""
        path, _, query = self.path.partition("?")
        env = {
            "PATH": "/usr/bin:/bin", "GIT_PROJECT_ROOT": ROOT, "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "bench", "REQUEST_METHOD": self.command, "PATH_INFO": path,
            "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(data)), "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for name in ("Content-Encoding", "Git-Protocol"):
            if name in self.headers:
                env["HTTP_" + name.upper().replace("-", "_")] = self.headers[name]
        result = subprocess.run(["/usr/lib/git-core/git-http-backend"], input=data, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        head, _, content = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = run
    do_POST = run


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
