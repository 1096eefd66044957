#!/usr/bin/env python3
"""A git smart-HTTP server over TLS for the HTTPS source tests.

`git http-backend` (CGI) behind a loopback TLS listener whose certificate is issued by a
test CA made here with the `openssl` CLI. Every request must carry the token, as the
password of HTTP basic auth (what libgit2 and forges use) or as a bearer token; anything
else gets 401 with a `WWW-Authenticate: Basic` challenge, as a forge answers.

    https_git.py --root DIR --token-file FILE --dir WORK

prints one JSON line when listening:
    {"port": N, "ca_file": ".../ca.pem", "other_ca_file": ".../other-ca.pem"}
and then logs one line per request to stderr (method, path, status, the user name and the
client's port, which tells connections apart; never the credentials). `other_ca_file` is
a CA that did not issue the server's certificate.

Two prefixes redirect (301), as a forge does for a moved repository: `/moved/P` to `/P` on
this server, `/elsewhere/P` to `/P` on `https://localhost:<port>` (another origin).

Only the standard library and the `openssl` and `git` commands are used.
"""

import argparse
import base64
import hmac
import json
import os
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(work: Path, name: str):
    """A self-signed CA certificate and key: work/<name>.pem, work/<name>.key."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2", "-subj", f"/CN=pve-gitops test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=work)
    return work / f"{name}.pem", work / f"{name}.key"


def make_server_cert(work: Path, ca: str):
    """A leaf for 127.0.0.1 and localhost, issued by work/<ca>.pem (not a CA itself)."""
    (work / "server.ext").write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=work)
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", "server.ext",
            "-out", "server.pem", cwd=work)
    return work / "server.pem", work / "server.key"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "https-git-test"
    # Set by main().
    root = None
    token = None

    def log_message(self, fmt, *args):  # one line per request, from log_request only
        pass

    def user(self):
        """The user name if the request carries the token, else None."""
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            return "bearer" if hmac.compare_digest(value.strip().encode(), self.token) else None
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip()).partition(b":")
        except ValueError:
            return None
        if hmac.compare_digest(password, self.token):
            return user.decode("utf-8", "replace") or "git"
        return None

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(self, status, headers, payload, user="-"):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        print(f"{self.command} {urlsplit(self.path).path} {status} user={user} "
              f"conn={self.client_address[1]}", file=sys.stderr, flush=True)

    def redirect(self):
        """Answer a redirecting prefix; False if the path has none."""
        for prefix, origin in (("/moved/", ""),
                               ("/elsewhere/", f"https://localhost:{self.server.server_address[1]}")):
            if self.path.startswith(prefix):
                self.answer(301, [("Location", origin + self.path[len(prefix) - 1:])], b"")
                return True
        return False

    def handle_git(self):
        body = self.body() if self.command == "POST" else b""
        if self.redirect():
            return
        user = self.user()
        if user is None:
            self.answer(401, [("WWW-Authenticate", 'Basic realm="git"'),
                              ("Content-Type", "text/plain")], b"authentication required\n")
            return
        url = urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True)
        if out.stderr:
            sys.stderr.write(out.stderr.decode("utf-8", "replace"))
        head, _, payload = out.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        self.answer(status, headers, payload, user)

    do_GET = handle_git
    do_POST = handle_git


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True, help="GIT_PROJECT_ROOT")
    p.add_argument("--token-file", required=True)
    p.add_argument("--dir", required=True, help="where the certificates go")
    a = p.parse_args()
    work = Path(a.dir)
    work.mkdir(parents=True, exist_ok=True)
    ca_file, _ = make_ca(work, "ca")
    other_ca, _ = make_ca(work, "other-ca")
    cert, key = make_server_cert(work, "ca")
    Handler.root = Path(a.root).resolve()
    Handler.token = Path(a.token_file).read_bytes().strip()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(json.dumps({"port": server.server_address[1], "ca_file": str(ca_file),
                      "other_ca_file": str(other_ca)}), flush=True)
    # Exit when the test closes our stdin (or dies), whatever happens to the kill.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
