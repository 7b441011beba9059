# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared by the _discovery tests: captured tokens and user data, and a fake discovery service.

FakeDiscovery is a tiny http.server on a free loopback port that answers like discovery.etcd.io would
(or would not): the code under test does real requests through open_url.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import time
from urllib.parse import quote

TOKEN = "3e86b59982e49066c5d813af1c2e2579cbf573de"
PUBLIC_URL = f"https://discovery.etcd.io/{TOKEN}"
V2_URL = "http://10.0.0.5:2379/v2/keys/_etcd/registry/0f3c9b2d7a6e4c1b8d5e2f9a0b1c2d3e"

# User data as the cloud-config generator and other tools write it

FLATCAR_V2 = f"""#cloud-config
coreos:
  units:
    - name: etcd-member.service
      command: start
      drop-ins:
        - name: 20-cluster.conf
          content: |
            [Service]
            Environment="ETCD_NAME=%m"
            Environment="ETCD_DISCOVERY={PUBLIC_URL}"
            Environment="ETCD_ADVERTISE_CLIENT_URLS=http://$private_ipv4:2379"
"""

FLATCAR_V3 = """#cloud-config
coreos:
  units:
    - name: etcd-member.service
      command: start
      drop-ins:
        - name: 20-cluster.conf
          content: |
            [Service]
            Environment="ETCD_DISCOVERY_TOKEN=0f3c9b2d7a6e4c1b"
            Environment="ETCD_DISCOVERY_ENDPOINTS=http://10.0.0.5:2379,http://10.0.0.6:2379"
"""

LEGACY_COREOS = f"""#cloud-config
coreos:
  etcd2:
    discovery: {PUBLIC_URL}
    advertise-client-urls: http://$private_ipv4:2379
    listen-client-urls: http://0.0.0.0:2379
  units:
    - name: etcd2.service
      command: start
"""

EXECSTART = f"""#cloud-config
coreos:
  units:
    - name: etcd.service
      content: |
        [Service]
        ExecStart=/usr/bin/etcd --name %m --discovery {V2_URL} --discovery-fallback exit
"""

EXECSTART_EQUALS = f"""[Service]
ExecStart=/usr/bin/etcd --name=%m --discovery-fallback=exit --discovery={V2_URL}
"""

SCRIPT = f"""#!/bin/bash
export ETCD_DISCOVERY="{PUBLIC_URL}"
exec etcd
"""

IGNITION_DROPIN = json.dumps({
    "ignition": {"version": "3.3.0"},
    "systemd": {"units": [{
        "name": "etcd-member.service", "enabled": True,
        "dropins": [{"name": "20-discovery.conf", "contents": f'[Service]\nEnvironment="ETCD_DISCOVERY={V2_URL}"\n'}],
    }]},
})

IGNITION_DATA_URL = json.dumps({
    "ignition": {"version": "3.3.0"},
    "storage": {"files": [{
        "path": "/etc/etcd.env",
        "contents": {"source": "data:," + quote(f"ETCD_DISCOVERY={V2_URL}\nETCD_NAME=node\n", safe="")},
    }]},
})

BROKEN_YAML = f"""#cloud-config
coreos:
  units:
  - name: etcd-member.service
     drop-ins: [ {{ oops
Environment="ETCD_DISCOVERY={PUBLIC_URL}"
"""

V3_FLAGS = """[Service]
ExecStart=/usr/bin/etcd --discovery-token=abc123 --discovery-endpoints=http://10.0.0.5:2379
"""

V2_RESULT = {"protocol": "v2", "url": V2_URL}
PUBLIC_RESULT = {"protocol": "v2", "url": PUBLIC_URL}
V3_RESULT = {"protocol": "v3", "token": "0f3c9b2d7a6e4c1b", "endpoints": ["http://10.0.0.5:2379", "http://10.0.0.6:2379"]}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64_wrapped(text: str) -> str:
    encoded = b64(text)
    return "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))


# A fake discovery service


class FakeDiscovery:
    """An HTTP server on a free loopback port that plays a script of answers to GET /new.

    Each answer is (status, body, headers, delay). The last one repeats when the script runs out.
    """

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                fake.requests.append(self.path)
                index = min(len(fake.requests), len(fake.answers)) - 1
                status, body, headers, delay = fake.answers[index]
                if delay:
                    time.sleep(delay)
                payload = body.replace("{base}", fake.url).encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def ok(body="{base}/" + TOKEN):
    return (200, body, {"Content-Type": "text/plain"}, 0)


def status(code, body="", headers=None, delay=0):
    return (code, body, headers or {}, delay)


def refused_url():
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)
