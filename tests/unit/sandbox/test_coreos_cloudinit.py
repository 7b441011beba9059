# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox's coreos-cloudinit stand-in, run on a scratch root with a recorded runner and a fake IMDS.

Every test asserts on the files the program left under the root, the commands it would have run and the
requests the metadata service saw, not only on what the program printed.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import os
import pwd
import socket
import stat
import threading
from pathlib import Path

import pytest
from node_image import IMAGE, load_program

_PROGRAM = IMAGE / "usr" / "bin" / "coreos-cloudinit.py"
ci = load_program("usr/bin/coreos-cloudinit.py", "sandbox_coreos_cloudinit")

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA alice"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB bob"


class Recorder:
    """Stands in for systemctl, hostname and systemd-run: records argv, fails the commands it is told to."""

    def __init__(self, fail: dict | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail or {}

    def __call__(self, argv):
        self.calls.append(list(argv))
        returncode, output = self.fail.get(tuple(argv), (0, ""))
        return ci.CommandResult(returncode, output)

    def systemctl(self) -> list[list[str]]:
        return [call for call in self.calls if call[0] == "systemctl"]


# --- a fake EC2 metadata service ------------------------------------------------------------------------


class FakeIMDS:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.failures: dict[tuple[str, str], int] = {}  # 503 answers to give before the route's answer
        self.requests: list[tuple[str, str, dict]] = []
        self.url = ""

    def ec2(self, user_data: bytes | None, token_status: int = 200, hostname: str = "ip-10-0-0-5.ec2.internal"):
        self.routes = {("PUT", "/latest/api/token"): (token_status, b"TOKEN-123" if token_status == 200 else b"no")}
        meta = "/2009-04-04/meta-data"
        for path, body in (("/public-keys", b"0=alice\n1=bob"), ("/public-keys/0/openssh-key", KEY_A.encode() + b"\n"),
                           ("/public-keys/1/openssh-key", KEY_B.encode()), ("/hostname", hostname.encode()),
                           ("/local-ipv4", b"10.0.0.5"), ("/public-ipv4", b"203.0.113.9")):
            self.routes[("GET", meta + path)] = (200, body)
        if user_data is not None:
            self.routes[("GET", "/2009-04-04/user-data")] = (200, user_data)


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base's name)
        pass

    def _answer(self, method: str) -> None:
        imds = self.server.imds
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        imds.requests.append((method, self.path, {key.lower(): value for key, value in self.headers.items()}))
        if imds.failures.get((method, self.path), 0) > 0:
            imds.failures[(method, self.path)] -= 1
            status, body = 503, b"busy"
        else:
            status, body = imds.routes.get((method, self.path), (404, b"Not Found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_PUT(self) -> None:
        self._answer("PUT")


@pytest.fixture(scope="module")
def _imds_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def imds(_imds_server):
    """A fresh fake service for each test on the module's one server (starting one costs a shutdown poll)."""
    _imds_server.imds = FakeIMDS()
    _imds_server.imds.url = "http://127.0.0.1:%d" % _imds_server.server_address[1]
    return _imds_server.imds


# --- helpers --------------------------------------------------------------------------------------------


def run_file(tmp_path: Path, user_data, *extra: str, runner: Recorder | None = None):
    """main() on user data given as a file, under tmp_path/root; (exit code, recorder, root)."""
    source = tmp_path / "user-data"
    source.write_bytes(user_data if isinstance(user_data, bytes) else user_data.encode())
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    runner = runner or Recorder()
    code = ci.main(["--from-file=%s" % source, "--root=%s" % root, *extra], runner=runner)
    return code, runner, root


def run_imds(tmp_path: Path, imds: FakeIMDS, *extra: str, runner: Recorder | None = None, sleeps=None):
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    runner = runner or Recorder()
    sleep = sleeps.append if sleeps is not None else (lambda seconds: None)
    code = ci.main(["--oem=ec2-compat", "--metadata-url=%s" % imds.url, "--root=%s" % root, *extra],
                   runner=runner, sleep=sleep)
    return code, runner, root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# --- command line ---------------------------------------------------------------------------------------


def test_version(capsys):
    assert ci.main(["--version"]) == 0
    assert capsys.readouterr().out == (
        "coreos-cloudinit 1.14.0 (stand-in of the coreos_ec2.cluster sandbox, not Flatcar's coreos-cloudinit)\n")


@pytest.mark.parametrize("argv, expected", [
    (["--oem=gce"], "Invalid option to --oem: 'gce'. Supported options: ec2-compat"),
    (["--oem=ec2-compat", "--bogus"], "unrecognized arguments: --bogus"),
    ([], "Provide --oem=ec2-compat or --from-file"),
])
def test_usage_errors_exit_2(argv, expected, capsys):
    assert ci.main(argv, runner=Recorder()) == 2
    assert expected in capsys.readouterr().err


def test_program_is_stored_without_interpreter_line_and_says_it_is_a_stand_in():
    text = _PROGRAM.read_text()
    assert text.startswith("# Copyright: coreos_ec2.cluster contributors\n# GNU General Public License v3.0+")
    assert "#!" not in text.splitlines()[0]
    assert not os.access(_PROGRAM, os.X_OK)
    assert "NOT Flatcar's coreos-cloudinit" in ci.__doc__


# --- metadata -------------------------------------------------------------------------------------------


def test_imdsv2_token_on_every_get_and_metadata_applied(tmp_path, imds):
    imds.ec2(b"#cloud-config\nwrite_files:\n  - path: /etc/addr\n    content: $private_ipv4 $public_ipv4\n")
    code, runner, root = run_imds(tmp_path, imds)
    assert code == 0
    method, path, headers = imds.requests[0]
    assert (method, path, headers["x-aws-ec2-metadata-token-ttl-seconds"]) == ("PUT", "/latest/api/token", "21600")
    gets = [request for request in imds.requests if request[0] == "GET"]
    assert [request[1] for request in gets] == [
        "/2009-04-04/user-data", "/2009-04-04/meta-data/public-keys",
        "/2009-04-04/meta-data/public-keys/0/openssh-key", "/2009-04-04/meta-data/public-keys/1/openssh-key",
        "/2009-04-04/meta-data/hostname", "/2009-04-04/meta-data/local-ipv4", "/2009-04-04/meta-data/public-ipv4"]
    assert all(request[2].get("x-aws-ec2-metadata-token") == "TOKEN-123" for request in gets)
    assert (root / "etc/addr").read_text() == "10.0.0.5 203.0.113.9"
    assert (root / "etc/hostname").read_text() == "ip-10-0-0-5\n"
    assert runner.calls[0] == ["hostname", "ip-10-0-0-5"]
    assert (root / "home/core/.ssh/authorized_keys").read_text() == KEY_A + "\n" + KEY_B + "\n"
    assert (root / "etc/environment").read_text() == (
        "COREOS_PRIVATE_IPV4=10.0.0.5\nCOREOS_PUBLIC_IPV4=203.0.113.9\n")


@pytest.mark.parametrize("status", [403, 404, 405])
def test_imdsv1_when_the_token_is_refused(tmp_path, imds, status, capsys):
    imds.ec2(b"#cloud-config\n", token_status=status)
    code, _runner, root = run_imds(tmp_path, imds)
    assert code == 0
    assert "No IMDSv2 token (HTTP %d), using IMDSv1" % status in capsys.readouterr().err
    gets = [request for request in imds.requests if request[0] == "GET"]
    assert len(gets) == 7
    assert not any("x-aws-ec2-metadata-token" in request[2] for request in gets)
    assert (root / "home/core/.ssh/authorized_keys").exists()


def test_token_answer_other_than_refusal_fails(tmp_path, imds, capsys):
    imds.ec2(b"#cloud-config\n", token_status=400)
    code, _runner, root = run_imds(tmp_path, imds)
    assert code == 1
    assert "Failed to get an IMDSv2 token" in capsys.readouterr().err
    assert not (root / "home").exists()


def test_5xx_retried_with_doubling_delay_then_success(tmp_path, imds):
    imds.ec2(b"#cloud-config\nhostname: node1\n")
    imds.failures = {("PUT", "/latest/api/token"): 1, ("GET", "/2009-04-04/user-data"): 2}
    sleeps: list[float] = []
    code, runner, root = run_imds(tmp_path, imds, sleeps=sleeps)
    assert code == 0
    assert sleeps == [0.5, 0.5, 1.0]  # the token's retry, then the user data's two
    assert (root / "etc/hostname").read_text() == "node1\n"


def test_unreachable_service_gives_up_at_the_deadline(tmp_path, capsys):
    with socket.socket() as probe:  # a port nobody listens on: connection refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    code = ci.main(["--oem=ec2-compat", "--metadata-url=http://127.0.0.1:%d" % port, "--metadata-timeout=10",
                    "--root=%s" % tmp_path], runner=Recorder(), sleep=sleep, clock=lambda: now[0])
    assert code == 1
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 2.5]
    assert "gave up after 6 attempts in 10 s" in capsys.readouterr().err


def test_backoff_is_capped_at_5_seconds(tmp_path):
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    client = ci.MetadataClient("http://127.0.0.1:9", timeout=60, sleep=sleep, clock=lambda: now[0])
    client._attempt = lambda method, url, headers: (503, b"")
    with pytest.raises(ci.CloudinitError, match="HTTP 503"):
        client.request("GET", "/x")
    assert sleeps[:6] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert sum(sleeps) == 60


def test_no_user_data_still_applies_the_metadata_keys(tmp_path, imds, capsys):
    imds.ec2(None)
    code, runner, root = run_imds(tmp_path, imds)
    assert code == 0
    assert "coreos-cloudinit: no user data" in capsys.readouterr().err
    assert (root / "home/core/.ssh/authorized_keys.d/coreos-cloudinit").read_text() == KEY_A + "\n" + KEY_B + "\n"
    assert runner.calls == [["hostname", "ip-10-0-0-5"]]
    assert not (root / "etc/environment").exists()  # only a cloud-config updates it, as in the real Apply


# --- substitution and user data kinds -------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("a: $private_ipv4", "a: 10.0.0.5"),
    ("a: $public_ipv4:2379", "a: 203.0.113.9:2379"),
    ("$private_ipv4,$private_ipv4", "10.0.0.5,10.0.0.5"),
    ("a: \\$private_ipv4", "a: $private_ipv4"),
    ("a: [$private_ipv6]", "a: []"),
    ("a: $public_ipv6", "a: "),
    ("a: $unknown $HOME ${x}", "a: $unknown $HOME ${x}"),
])
def test_substitution(text, expected, monkeypatch):
    for name in ("COREOS_PUBLIC_IPV6", "COREOS_PRIVATE_IPV6"):
        monkeypatch.delenv(name, raising=False)
    metadata = ci.Metadata(private_ipv4="10.0.0.5", public_ipv4="203.0.113.9")
    assert ci.substitute(text, metadata) == expected


@pytest.mark.parametrize("text, kind", [
    ("#cloud-config\nhostname: a\n", "cloud-config"),
    ("#cloud-config\r\nhostname: a\r\n", "cloud-config"),
    ("#!/bin/bash\necho hi\n", "script"),
    ("", "empty"),
    ("\n  \n", "empty"),
    ("hostname: a\n", "unknown"),
    ("#cloud-configuration\n", "unknown"),
    ('{"ignition": {}}', "unknown"),
])
def test_kind_of(text, kind):
    assert ci.kind_of(text) == kind


def test_script_is_run_as_a_transient_unit(tmp_path):
    code, runner, root = run_file(tmp_path, "#!/bin/bash\necho $private_ipv4 > /tmp/x\n")
    script = root / "var/lib/coreos-cloudinit/user-data-script"
    assert code == 0
    assert script.read_text() == "#!/bin/bash\necho  > /tmp/x\n"
    assert mode(script) == 0o700
    assert runner.calls == [["systemd-run", "--unit=coreos-cloudinit-script", "--no-block", str(script)]]


def test_unrecognized_user_data_fails_after_the_metadata_keys(tmp_path, imds, capsys):
    imds.ec2(b"hostname: nope\n")
    code, runner, root = run_imds(tmp_path, imds)
    assert code == 1
    assert "unrecognized user data format" in capsys.readouterr().err
    assert (root / "home/core/.ssh/authorized_keys").exists()
    assert runner.systemctl() == []


def test_gzip_user_data(tmp_path):
    code, _runner, root = run_file(tmp_path, gzip.compress(b"#cloud-config\nhostname: zipped\n"))
    assert code == 0
    assert (root / "etc/hostname").read_text() == "zipped\n"


def test_empty_user_data_does_nothing(tmp_path):
    code, runner, root = run_file(tmp_path, "")
    assert code == 0
    assert runner.calls == []
    assert list(root.iterdir()) == []


# --- hostname and SSH keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("user_data, metadata_hostname, expected", [
    (b"#cloud-config\n", "ip-10-0-0-5.ec2.internal", "ip-10-0-0-5"),
    (b"#cloud-config\nhostname: web1\n", "ip-10-0-0-5.ec2.internal", "web1"),
    (b"#cloud-config\nhostname: web1.example.com\n", "", "web1"),
    (b"#cloud-config\nhostname: " + b"h" * 70 + b"\n", "", "h" * 63),
    (b"#cloud-config\n", "ip-10-0-0-5.ec2.internal other-name", "ip-10-0-0-5"),
])
def test_hostname(tmp_path, imds, user_data, metadata_hostname, expected):
    imds.ec2(user_data, hostname=metadata_hostname)
    code, runner, root = run_imds(tmp_path, imds)
    assert code == 0
    assert (root / "etc/hostname").read_text() == expected + "\n"
    assert runner.calls[0] == ["hostname", expected]


def test_failed_hostname_still_writes_keys_then_exits_1(tmp_path):
    runner = Recorder({("hostname", "web1"): (1, "hostname: you must be root to change the host name\n")})
    code, runner, root = run_file(tmp_path, "#cloud-config\nhostname: web1\nssh_authorized_keys: [%s]\n"
                                  "coreos:\n  units:\n    - {name: a.service, command: start}\n" % KEY_A,
                                  runner=runner)
    assert code == 1
    assert (root / "home/core/.ssh/authorized_keys").read_text() == KEY_A + "\n"
    assert runner.systemctl() == []


def test_ssh_keys_merged_into_authorized_keys_like_update_ssh_keys(tmp_path):
    ssh = tmp_path / "root/home/core/.ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text("ssh-rsa AAAAold by-hand\n")
    code, _runner, root = run_file(tmp_path, "#cloud-config\nssh_authorized_keys:\n  - %s\n  - %s\n" % (KEY_A, KEY_B))
    assert code == 0
    keys_d = ssh / "authorized_keys.d"
    assert (keys_d / "coreos-cloudinit").read_text() == KEY_A + "\n" + KEY_B + "\n"
    assert (keys_d / "old_authorized_keys").read_text() == "ssh-rsa AAAAold by-hand\n"
    # sorted by name: coreos-cloudinit before old_authorized_keys
    assert (ssh / "authorized_keys").read_text() == KEY_A + "\n" + KEY_B + "\nssh-rsa AAAAold by-hand\n"
    assert (mode(ssh), mode(keys_d), mode(ssh / "authorized_keys")) == (0o700, 0o700, 0o600)
    assert mode(keys_d / "coreos-cloudinit") == 0o600
    # A second boot rewrites our file and keeps the others.
    (keys_d / "zz-extra").write_text("ssh-ed25519 AAAAextra")
    code, _runner, _root = run_file(tmp_path, "#cloud-config\nssh_authorized_keys: [%s]\n" % KEY_B)
    assert (ssh / "authorized_keys").read_text() == KEY_B + "\nssh-rsa AAAAold by-hand\nssh-ed25519 AAAAextra\n"


# --- write_files ----------------------------------------------------------------------------------------

_PAYLOAD = b"line one\nline two\n"


@pytest.mark.parametrize("entry, data, file_mode", [
    ("content: |\n      line one\n      line two\n", _PAYLOAD, 0o644),
    ("permissions: '0600'\n    content: x", b"x", 0o600),
    ("permissions: 0755\n    content: x", b"x", 0o755),  # YAML's octal integer
    ("permissions: 644\n    content: x", b"x", 0o644),  # read as octal text, as Go's string field does
    ("permissions: '4755'\n    content: x", b"x", 0o4755),
    ("encoding: b64\n    content: %s" % base64.b64encode(_PAYLOAD).decode(), _PAYLOAD, 0o644),
    ("encoding: base64\n    content: %s" % base64.b64encode(_PAYLOAD).decode(), _PAYLOAD, 0o644),
    ("encoding: gz+b64\n    content: %s" % base64.b64encode(gzip.compress(_PAYLOAD)).decode(), _PAYLOAD, 0o644),
    ("encoding: gzip+b64\n    content: %s" % base64.b64encode(gzip.compress(_PAYLOAD)).decode(), _PAYLOAD, 0o644),
    ("encoding: gz+base64\n    content: %s" % base64.b64encode(gzip.compress(_PAYLOAD)).decode(), _PAYLOAD, 0o644),
    ("encoding: gzip+base64\n    content: %s" % base64.b64encode(gzip.compress(_PAYLOAD)).decode(), _PAYLOAD,
     0o644),
    ("content: 12", b"12", 0o644),
    ("", b"", 0o644),
])
def test_write_files(tmp_path, entry, data, file_mode):
    code, _runner, root = run_file(tmp_path, "#cloud-config\nwrite_files:\n  - path: /etc/deep/dir/f\n    %s\n" % entry)
    assert code == 0
    path = root / "etc/deep/dir/f"
    assert (path.read_bytes(), mode(path)) == (data, file_mode)
    assert mode(root / "etc/deep") == 0o755
    assert [name for name in os.listdir(path.parent) if name.startswith(".")] == []  # no temp file left


def test_write_files_owner_and_overwrite(tmp_path):
    me = pwd.getpwuid(os.getuid())
    target = tmp_path / "root/etc/f"
    target.parent.mkdir(parents=True)
    target.write_text("old")
    for owner in (me.pw_name, "%d:%d" % (os.getuid(), os.getgid()), os.getuid()):
        code, _runner, root = run_file(tmp_path, "#cloud-config\nwrite_files:\n  - {path: /etc/f, owner: '%s', "
                                       "content: new}\n" % owner)
        assert code == 0
        assert (target.read_text(), target.stat().st_uid) == ("new", os.getuid())


def test_write_files_unknown_owner_stops(tmp_path, capsys):
    code, runner, root = run_file(tmp_path, "#cloud-config\nwrite_files:\n  - {path: /a, owner: no-such-user-x}\n"
                                  "  - {path: /b}\ncoreos:\n  units: [{name: a.service, command: start}]\n")
    assert code == 1
    assert "Unknown owner 'no-such-user-x'" in capsys.readouterr().err
    assert not (root / "b").exists()
    assert runner.systemctl() == []


# --- units ----------------------------------------------------------------------------------------------

UNITS = """#cloud-config
coreos:
  units:
    - name: etcd-member.service
      enable: true
      command: start
      drop_ins:
        - name: 20-clct-etcd-member.conf
          content: |
            [Service]
            Environment=ETCD_NAME=a
    - name: fleet.service
      command: start
      drop-ins:
        - name: 10-old.conf
          content: "[Service]\\n"
    - name: app.service
      runtime: true
      enable: true
      content: |
        [Service]
        ExecStart=/bin/true
      drop_ins:
        - {name: 50-x.conf, content: "[Unit]\\n"}
    - name: update-engine.service
      mask: true
      command: stop
    - name: data.mount
      content: "[Mount]\\n"
      command: restart
"""


def test_units_are_written(tmp_path):
    code, _runner, root = run_file(tmp_path, UNITS)
    assert code == 0
    etc, run = root / "etc/systemd/system", root / "run/systemd/system"
    assert (etc / "etcd-member.service.d/20-clct-etcd-member.conf").read_text() == (
        "[Service]\nEnvironment=ETCD_NAME=a\n")
    assert not (etc / "etcd-member.service").exists()
    assert (etc / "fleet.service.d/10-old.conf").read_text() == "[Service]\n"
    assert (run / "app.service").read_text() == "[Service]\nExecStart=/bin/true\n"
    assert (run / "app.service.d/50-x.conf").read_text() == "[Unit]\n"
    assert not (etc / "app.service").exists()
    assert os.readlink(etc / "update-engine.service") == "/dev/null"
    assert mode(etc / "data.mount") == 0o644


def test_systemctl_calls_in_order(tmp_path, capsys):
    code, runner, _root = run_file(tmp_path, UNITS)
    assert code == 0
    assert runner.calls == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "etcd-member.service"],
        ["systemctl", "enable", "--runtime", "app.service"],
        ["systemctl", "start", "--no-block", "etcd-member.service"],
        ["systemctl", "start", "--no-block", "fleet.service"],
        ["systemctl", "stop", "--no-block", "update-engine.service"],
        ["systemctl", "restart", "--no-block", "data.mount"],
    ]
    err = capsys.readouterr().err
    assert 'coreos-cloudinit: Writing unit "etcd-member.service" drop-in "20-clct-etcd-member.conf"\n' in err
    assert 'coreos-cloudinit: Calling unit command "start" on "fleet.service"\n' in err


def test_first_failing_enable_stops_the_run(tmp_path, capsys):
    runner = Recorder({("systemctl", "enable", "app.service"): (
        1, "Failed to enable unit: Unit file app.service does not exist.\n")})
    code, runner, root = run_file(tmp_path, "#cloud-config\ncoreos:\n  units:\n"
                                  "    - {name: a.service, enable: true, command: start}\n"
                                  "    - {name: app.service, enable: true, command: start}\n"
                                  "    - {name: c.service, enable: true, command: start}\n", runner=runner)
    assert code == 1
    assert runner.calls == [["systemctl", "daemon-reload"], ["systemctl", "enable", "a.service"],
                            ["systemctl", "enable", "app.service"]]
    assert ('Failed to enable unit "app.service": Failed to enable unit: Unit file app.service does not exist.'
            in capsys.readouterr().err)


def test_failing_command_stops_the_run(tmp_path):
    runner = Recorder({("systemctl", "start", "--no-block", "a.service"): (5, "Unit a.service not found.")})
    code, runner, _root = run_file(tmp_path, "#cloud-config\ncoreos:\n  units:\n    - {name: a.service, command: start}\n"
                                   "    - {name: b.service, command: start}\n", runner=runner)
    assert code == 1
    assert runner.calls[-1] == ["systemctl", "start", "--no-block", "a.service"]


def test_mask_replaces_a_file_and_runtime_unmasks(tmp_path):
    etc, run = tmp_path / "root/etc/systemd/system", tmp_path / "root/run/systemd/system"
    etc.mkdir(parents=True)
    run.mkdir(parents=True)
    (etc / "a.service").write_text("[Service]\n")
    os.symlink("/dev/null", run / "b.service")
    code, _runner, _root = run_file(tmp_path, "#cloud-config\ncoreos:\n  units:\n    - {name: a.service, mask: true}\n"
                                    "    - {name: b.service, runtime: true}\n")
    assert code == 0
    assert os.readlink(etc / "a.service") == "/dev/null"
    assert not os.path.lexists(run / "b.service")


def test_without_a_runner_nothing_runs_outside_root_slash(tmp_path, capsys):
    source = tmp_path / "user-data"
    source.write_text("#cloud-config\nhostname: x\ncoreos:\n  units: [{name: a.service, command: start}]\n")
    assert ci.main(["--from-file=%s" % source, "--root=%s" % tmp_path]) == 0
    assert "Not running systemctl start --no-block a.service: --root is not /" in capsys.readouterr().err


# --- keys not applied, validation -----------------------------------------------------------------------


def test_skipped_keys_are_logged(tmp_path, capsys):
    code, runner, _root = run_file(tmp_path, "#cloud-config\nusers: [{name: bob}]\nmanage_etc_hosts: localhost\n"
                                   "mystery: 1\ncoreos:\n  etcd2: {name: a}\n  fleet: {}\n  update:\n"
                                   "    reboot-strategy: etcd-lock\n  locksmith: {}\n  flannel: {}\n  oem: {}\n"
                                   "  etcd: {}\n  units: []\n")
    assert code == 0
    err = capsys.readouterr().err
    for key in ("users", "manage_etc_hosts", "mystery", "coreos.etcd2", "coreos.fleet", "coreos.update",
                "coreos.locksmith", "coreos.flannel", "coreos.oem", "coreos.etcd"):
        assert "coreos-cloudinit: skipping %s: not applied by the sandbox stand-in\n" % key in err
    assert runner.calls == []


@pytest.mark.parametrize("text, line", [
    ("#cloud-config\nhostname: a\nwrite_files:\n  - path: /x\n   content: y\n", 5),
    ("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n  - b\n", 5),
    ("#cloud-config\nhostname: [a\n", 3),
    ("#cloud-config\nhostname: \"a\x01\"\n", 2),
])
def test_bad_yaml_names_the_line_and_applies_nothing(tmp_path, text, line, capsys):
    code, runner, root = run_file(tmp_path, text)
    assert code == 1
    assert "line %d: error:" % line in capsys.readouterr().err
    assert runner.calls == [] and list(root.iterdir()) == []
    code, _runner, _root = run_file(tmp_path, text, "--validate")
    assert code == 1
    assert "line %d: error:" % line in capsys.readouterr().out


@pytest.mark.parametrize("text, expected", [
    ("#cloud-config\nwrite_files:\n  - path: /a\n    permissions: '0999'\n",
     "line 4: error: file /a: permissions '0999' is not an octal mode such as 0644"),
    ("#cloud-config\nwrite_files:\n  - path: /a\n    encoding: rot13\n",
     "line 4: error: file /a: unknown encoding 'rot13'"),
    ("#cloud-config\nwrite_files:\n  - path: /a\n    encoding: gz+b64\n    content: aGVsbG8=\n",
     "line 5: error: file /a: content is not valid gzip"),
    ("#cloud-config\nwrite_files:\n  - content: x\n", "line 3: error: a write_files entry needs a path"),
    ("#cloud-config\ncoreos:\n  units:\n    - name: etcd\n", "line 4: error: unit 'etcd': the name must end in"),
    ("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      drop_ins: [{name: x.txt, content: y}]\n",
     "line 5: error: unit a.service: drop-in name 'x.txt' must end in .conf"),
    ("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      command: begin\n",
     "line 5: error: unit a.service: command 'begin' is not one of start, stop"),
    ("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      enable: 'maybe'\n",
     "line 5: error: unit a.service: enable must be true or false"),
    ("#cloud-config\ncoreos:\n  units:\n    - {name: a.service, drop_ins: [], drop-ins: []}\n",
     "error: a unit has both drop_ins and drop-ins"),
    ("#cloud-config\nhostnme: a\n", "line 2: warning: unrecognized key 'hostnme' in the cloud-config"),
    ("#cloud-config\n- a\n", "line 2: error: cloud-config must be a mapping"),
    ("hello\n", "line 1: error: unrecognized user data format"),
])
def test_validate_reports_problems_and_applies_nothing(tmp_path, text, expected, capsys):
    code, runner, root = run_file(tmp_path, text, "--validate")
    assert code == 1
    assert expected in capsys.readouterr().out
    assert runner.calls == [] and list(root.iterdir()) == []


@pytest.mark.parametrize("text", [UNITS, "#!/bin/sh\n", "", "#cloud-config\ncoreos:\n  etcd2: {}\nusers: []\n"])
def test_validate_accepts_good_user_data(tmp_path, text, capsys):
    code, runner, root = run_file(tmp_path, text, "--validate")
    assert (code, capsys.readouterr().out) == (0, "")
    assert runner.calls == [] and list(root.iterdir()) == []


def test_invalid_cloud_config_applies_only_metadata(tmp_path, capsys):
    code, runner, root = run_file(tmp_path, "#cloud-config\nhostname: h\nwrite_files:\n  - {path: /a}\n"
                                  "coreos:\n  units: [{name: bad}]\n")
    assert code == 1
    assert "invalid cloud-config" in capsys.readouterr().err
    assert not (root / "a").exists() and runner.calls == []
