# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stand-in of coreos_ec2.cluster's sandbox for coreos-cloudinit: this is NOT Flatcar's coreos-cloudinit.

The sandbox boots each emulated EC2 instance as a systemd-nspawn container and runs this program at boot as
`/usr/bin/coreos-cloudinit --oem=ec2-compat`, where a Flatcar machine runs the real Go program
(https://github.com/flatcar/coreos-cloudinit). It follows the real tool's documented behaviour for the part
of the cloud-config format the collection and its users write:
  * the EC2 datasource: IMDSv2 token (IMDSv1 when refused), user-data, public-keys, hostname, local-ipv4
    and public-ipv4 under the 2009-04-04 API, retried while the metadata service is not yet reachable;
    gzip-compressed user data is unpacked;
  * `$private_ipv4`, `$public_ipv4`, `$private_ipv6`, `$public_ipv6` substitution (`\\$name` escapes);
  * user data that is a `#cloud-config`, a `#!` script (run as a transient unit) or empty;
  * in the real tool's order: the hostname (metadata's, overridden by the cloud-config's, cut at the first
    dot), the core user's SSH keys (authorized_keys.d/coreos-cloudinit, as update-ssh-keys), write_files
    (every encoding, permissions, owner), /etc/environment's COREOS_*_IPV4 variables, then coreos.units
    (content, drop-ins, mask, runtime, enable, command);
  * `--validate`, reporting problems with their line numbers.
It does not implement (each is logged as skipped): users, manage_etc_hosts, coreos.etcd, coreos.etcd2,
coreos.fleet, coreos.flannel, coreos.locksmith, coreos.update, coreos.oem; nor the other OEMs and
datasources, MIME multipart or Ignition user data, network config conversion, --ignore-failure or
--ssh-key-name. Where the real tool talks to systemd over D-Bus, this one runs systemctl, hostname and
systemd-run. Standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import grp
import gzip
import http.client
import os
import pwd
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Optional

import yaml

VERSION = "1.14.0"
VERSION_TEXT = "coreos-cloudinit %s (stand-in of the coreos_ec2.cluster sandbox, not Flatcar's coreos-cloudinit)"
DEFAULT_METADATA_URL = "http://169.254.169.254"
SUPPORTED_OEMS = ("ec2-compat",)
# Where the real tool keeps its state (its --workspace default).
WORKSPACE = "var/lib/coreos-cloudinit"
SSH_KEY_NAME = "coreos-cloudinit"
SCRIPT_UNIT = "coreos-cloudinit-script"

TOKEN_TTL_SECONDS = "21600"
REQUEST_TIMEOUT = 2.0
FIRST_DELAY = 0.5
MAX_DELAY = 5.0

UNIT_COMMANDS = ("start", "stop", "restart", "reload", "try-restart", "reload-or-restart", "reload-or-try-restart")
UNIT_NAME = re.compile(
    r"^[^/\s]+\.(service|socket|mount|timer|path|target|device|swap|slice|scope|automount)$"
)
DROP_IN_NAME = re.compile(r"^[^/\s]+\.conf$")
ENCODINGS = {
    "": (False, False),
    "b64": (True, False), "base64": (True, False),
    "gz": (False, True), "gzip": (False, True),
    "gz+b64": (True, True), "gzip+b64": (True, True), "gz+base64": (True, True), "gzip+base64": (True, True),
}
# Keys the real tool acts on and this stand-in does not; unknown keys are skipped the same way but are
# also reported by --validate, as the real validator reports unrecognized keys.
NOT_APPLIED_TOP = ("users", "manage_etc_hosts")
NOT_APPLIED_COREOS = ("etcd", "etcd2", "fleet", "flannel", "locksmith", "update", "oem")


def log(message: str) -> None:
    print("coreos-cloudinit: %s" % message, file=sys.stderr, flush=True)


class CloudinitError(Exception):
    """A step failed; the message names the object and the cause. main() logs it and exits 1."""


# --- commands -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CommandResult:
    returncode: int
    output: str = ""


Runner = Callable[[list], CommandResult]


def run_command(argv: list) -> CommandResult:
    """The real runner: the command's stdout and stderr together, so a failure can be quoted."""
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
    except OSError as exc:
        return CommandResult(127, str(exc))
    return CommandResult(proc.returncode, proc.stdout)


def dry_runner(argv: list) -> CommandResult:
    """With --root other than /, the files land in a scratch tree: the host's systemd must not be touched."""
    log("Not running %s: --root is not /" % " ".join(argv))
    return CommandResult(0)


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _run(runner: Runner, argv: list, what: str) -> None:
    result = runner(argv)
    if result.returncode != 0:
        raise CloudinitError("%s: %s (exit %d)" % (what, _last_line(result.output), result.returncode))


# --- metadata -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Metadata:
    hostname: str = ""
    ssh_keys: list = dataclasses.field(default_factory=list)
    private_ipv4: str = ""
    public_ipv4: str = ""
    private_ipv6: str = ""
    public_ipv6: str = ""


class MetadataClient:
    """EC2 instance metadata, fetched as Flatcar's ec2 datasource does (datasource/metadata/ec2/metadata.go).

    The service may not answer in the first moments of boot, so connection errors and 5xx answers are
    retried with a doubling delay; one deadline covers the whole fetch, which bounds how long boot waits.
    """

    def __init__(self, base_url: str, timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock
        self.token: Optional[str] = None
        self._deadline: Optional[float] = None
        # The metadata address is link-local: a proxy from the environment could only get it wrong.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _attempt(self, method: str, url: str, headers: dict) -> tuple:
        request = urllib.request.Request(url, data=b"" if method == "PUT" else None, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=REQUEST_TIMEOUT) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            exc.close()
            return exc.code, body

    def request(self, method: str, path: str, headers: Optional[dict] = None) -> tuple:
        """(status, body) of the first answer that is not a 5xx, retrying until the deadline."""
        url = self.base_url + path
        headers = dict(headers or {})
        if self.token is not None:
            headers["X-aws-ec2-metadata-token"] = self.token
        if self._deadline is None:
            self._deadline = self.clock() + self.timeout
        delay = FIRST_DELAY
        attempts = 0
        while True:
            attempts += 1
            try:
                status, body = self._attempt(method, url, headers)
                if status < 500:
                    return status, body
                cause = "HTTP %d" % status
            except (OSError, http.client.HTTPException) as exc:  # refused, unreachable, timed out, cut short
                cause = str(getattr(exc, "reason", exc))
            remaining = self._deadline - self.clock()
            if remaining <= 0:
                raise CloudinitError("Failed to fetch %s %s: %s (gave up after %d attempts in %.0f s)"
                                     % (method, url, cause, attempts, self.timeout))
            log("%s %s: %s, retrying in %.1f s" % (method, url, cause, min(delay, remaining)))
            self.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_DELAY)

    def fetch_token(self) -> None:
        ttl = {"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL_SECONDS}
        status, body = self.request("PUT", "/latest/api/token", ttl)
        if status == 200:
            self.token = body.decode("ascii", "replace").strip()
        elif status in (403, 404, 405):
            # An IMDSv1-only service, or one refusing tokens: Flatcar carries on without one.
            log("No IMDSv2 token (HTTP %d), using IMDSv1" % status)
        else:
            raise CloudinitError("Failed to get an IMDSv2 token from %s/latest/api/token: HTTP %d"
                                 % (self.base_url, status))

    def get(self, path: str) -> Optional[bytes]:
        """The body, or None when the service says 404 (the item does not exist for this instance)."""
        status, body = self.request("GET", path)
        if status == 200:
            return body
        if status == 404:
            return None
        raise CloudinitError("Failed to fetch %s%s: HTTP %d" % (self.base_url, path, status))

    def get_line(self, path: str) -> str:
        # The real datasource keeps the first line of a leaf only.
        body = self.get(path)
        lines = (body or b"").decode("utf-8", "replace").splitlines()
        return lines[0].strip() if lines else ""


def fetch_ec2(client: MetadataClient, want_user_data: bool = True) -> tuple:
    """(user data bytes or None, Metadata) from the EC2 metadata service."""
    client.fetch_token()
    user_data = client.get("/2009-04-04/user-data") if want_user_data else None
    metadata = Metadata()
    listing = (client.get("/2009-04-04/meta-data/public-keys") or b"").decode("utf-8", "replace")
    for line in listing.splitlines():
        index, sep, name = line.strip().partition("=")
        if not sep:
            raise CloudinitError("Malformed public key entry %r in %s/2009-04-04/meta-data/public-keys"
                                 % (line, client.base_url))
        key = client.get_line("/2009-04-04/meta-data/public-keys/%s/openssh-key" % index)
        if key:
            log("Found SSH key for %r" % name)
            metadata.ssh_keys.append(key)
    # EC2 may list several names separated by spaces; the first is the machine's own.
    metadata.hostname = client.get_line("/2009-04-04/meta-data/hostname").split(" ")[0]
    metadata.private_ipv4 = client.get_line("/2009-04-04/meta-data/local-ipv4")
    metadata.public_ipv4 = client.get_line("/2009-04-04/meta-data/public-ipv4")
    return user_data, metadata


# --- user data ------------------------------------------------------------------------------------------


def decompress_if_gzip(data: bytes) -> bytes:
    # EC2 user data is limited to 16 KB, so the real tool accepts it gzip-compressed.
    if not data.startswith(b"\x1f\x8b"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise CloudinitError("Failed to decompress gzip user data: %s" % exc) from exc


def substitute(text: str, metadata: Metadata) -> str:
    """Replace $private_ipv4 and friends as initialize/env.go does; `\\$private_ipv4` stays literal."""
    values = {
        "$public_ipv4": metadata.public_ipv4 or os.environ.get("COREOS_PUBLIC_IPV4", ""),
        "$private_ipv4": metadata.private_ipv4 or os.environ.get("COREOS_PRIVATE_IPV4", ""),
        "$public_ipv6": metadata.public_ipv6 or os.environ.get("COREOS_PUBLIC_IPV6", ""),
        "$private_ipv6": metadata.private_ipv6 or os.environ.get("COREOS_PRIVATE_IPV6", ""),
    }
    for key, value in values.items():
        text = re.sub(r"(?<!\\)" + re.escape(key), lambda _match, value=value: value, text)
        text = text.replace("\\" + key, key)
    return text


def kind_of(text: str) -> str:
    """'empty', 'script', 'cloud-config' or 'unknown', from the first line as config.IsCloudConfig reads it."""
    if not text.strip():
        return "empty"
    header = text.split("\n", 1)[0].rstrip("\r")
    if header.startswith("#!"):
        return "script"
    if header.rstrip() == "#cloud-config":
        return "cloud-config"
    return "unknown"


@dataclasses.dataclass
class Problem:
    line: Optional[int]
    level: str  # "error" or "warning"
    message: str

    def __str__(self) -> str:
        where = "line %d: " % self.line if self.line else ""
        return "%s%s: %s" % (where, self.level, self.message)


class Document:
    """The parsed YAML with its node tree, for line numbers and the raw text of scalars.

    The raw text matters because the real tool decodes into Go strings: `permissions: 644` means 0644 there,
    where YAML alone would read the integer 644.
    """

    def __init__(self, data: Any, node: Optional[yaml.Node]) -> None:
        self.data = data
        self.node = node

    def node_at(self, path: tuple) -> Optional[yaml.Node]:
        node = self.node
        for step in path:
            if isinstance(node, yaml.MappingNode) and isinstance(step, str):
                node = next((value for key, value in node.value
                             if isinstance(key, yaml.ScalarNode) and key.value == step), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                node = node.value[step]
            else:
                return None
        return node

    def line(self, path: tuple) -> Optional[int]:
        node = self.node_at(path)
        return node.start_mark.line + 1 if node is not None else None

    def raw(self, path: tuple) -> Optional[str]:
        node = self.node_at(path)
        return node.value if isinstance(node, yaml.ScalarNode) else None


def parse_yaml(text: str) -> Document:
    """Safe-load the cloud-config; a YAML error becomes a Problem naming its line."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters already
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise InvalidUserData([Problem(mark.line + 1 if mark else None, "error", message)]) from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise InvalidUserData([Problem(line, "error", "unacceptable character #x%04x" % exc.character)]) from exc
    finally:
        if loader is not None:
            loader.dispose()
    return Document(data, node)


class InvalidUserData(CloudinitError):
    def __init__(self, problems: list) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems


# --- the plan: what the cloud-config asks for, checked before anything is applied -----------------------


@dataclasses.dataclass
class FileSpec:
    path: str
    data: bytes
    mode: int
    owner: str = ""


@dataclasses.dataclass
class DropIn:
    name: str
    content: str


@dataclasses.dataclass
class UnitSpec:
    name: str
    content: str = ""
    drop_ins: list = dataclasses.field(default_factory=list)
    enable: bool = False
    command: str = ""
    mask: bool = False
    runtime: bool = False


@dataclasses.dataclass
class Plan:
    hostname: str = ""
    ssh_keys: list = dataclasses.field(default_factory=list)
    files: list = dataclasses.field(default_factory=list)
    units: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)


def _norm(key: Any) -> str:
    # The real tool accepts `drop-ins` for `drop_ins`, `reboot-strategy` for `reboot_strategy`, and so on.
    return str(key).replace("-", "_")


class _Planner:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list = []

    def error(self, path: tuple, message: str) -> None:
        self.problems.append(Problem(self.doc.line(path), "error", message))

    def warning(self, path: tuple, message: str) -> None:
        self.problems.append(Problem(self.doc.line(path), "warning", message))

    def mapping(self, value: Any, path: tuple, what: str, known: tuple) -> dict:
        """{normalised key: (original key, value)}; unknown keys are warned about and dropped."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, "%s must be a mapping" % what)
            return {}
        out = {}
        for key, item in value.items():
            name = _norm(key)
            if name not in known:
                self.warning(path + (key,), "unrecognized key %r in %s" % (key, what))
            elif name in out:
                self.error(path + (key,), "%r given twice in %s (as %r and %r)" % (name, what, out[name][0], key))
            else:
                out[name] = (key, item)
        return out

    def sequence(self, value: Any, path: tuple, what: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, "%s must be a list" % what)
            return []
        return value

    def string(self, value: Any, path: tuple, what: str) -> str:
        # Go decodes any scalar into a string field from its text; null is the empty string.
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        raw = self.doc.raw(path)
        if raw is not None and not isinstance(value, (list, dict)):
            return raw
        self.error(path, "%s must be a string" % what)
        return ""

    def boolean(self, value: Any, path: tuple, what: str) -> bool:
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        self.error(path, "%s must be true or false, not %r" % (what, value))
        return False

    def plan(self) -> Plan:
        plan = Plan()
        known_top = ("hostname", "ssh_authorized_keys", "write_files", "coreos") + NOT_APPLIED_TOP
        if self.doc.data is not None and not isinstance(self.doc.data, dict):
            self.problems.append(Problem(self.doc.line(()), "error", "cloud-config must be a mapping"))
            return plan
        for key in (self.doc.data or {}):
            if _norm(key) not in known_top:
                plan.skipped.append(str(key))
        top = self.mapping(self.doc.data, (), "the cloud-config", known_top)
        if "hostname" in top:
            key, value = top["hostname"]
            plan.hostname = self.string(value, (key,), "hostname")
        if "ssh_authorized_keys" in top:
            key, value = top["ssh_authorized_keys"]
            for index, item in enumerate(self.sequence(value, (key,), key)):
                plan.ssh_keys.append(self.string(item, (key, index), "an SSH key"))
        if "write_files" in top:
            key, value = top["write_files"]
            for index, item in enumerate(self.sequence(value, (key,), key)):
                spec = self.file((key, index), item)
                if spec is not None:
                    plan.files.append(spec)
        for name in NOT_APPLIED_TOP:
            if name in top:
                plan.skipped.append(str(top[name][0]))
        if "coreos" in top:
            key, value = top["coreos"]
            if isinstance(value, dict):
                for sub in value:
                    if _norm(sub) not in ("units",) + NOT_APPLIED_COREOS:
                        plan.skipped.append("%s.%s" % (key, sub))
            coreos = self.mapping(value, (key,), key, ("units",) + NOT_APPLIED_COREOS)
            for name in NOT_APPLIED_COREOS:
                if name in coreos:
                    plan.skipped.append("%s.%s" % (key, coreos[name][0]))
            if "units" in coreos:
                units_key, units = coreos["units"]
                for index, item in enumerate(self.sequence(units, (key, units_key), "coreos.units")):
                    spec = self.unit((key, units_key, index), item)
                    if spec is not None:
                        plan.units.append(spec)
        return plan

    def file(self, path: tuple, item: Any) -> Optional[FileSpec]:
        known = ("path", "content", "permissions", "owner", "encoding")
        fields = self.mapping(item, path, "a write_files entry", known)
        if not isinstance(item, dict):
            return None
        values = {name: self.string(value, path + (key,), name) for name, (key, value) in fields.items()}
        if not values.get("path"):
            self.error(path, "a write_files entry needs a path")
            return None
        mode = 0o644
        permissions = values.get("permissions", "")
        if permissions:
            try:
                mode = int(permissions, 8)
            except ValueError:
                mode = -1
            if not 0 <= mode <= 0o7777:
                self.error(path + (fields["permissions"][0],),
                           "file %s: permissions %r is not an octal mode such as 0644" % (values["path"], permissions))
                return None
        encoding = values.get("encoding", "").lower()
        if encoding not in ENCODINGS:
            self.error(path + (fields["encoding"][0],), "file %s: unknown encoding %r (use one of %s)"
                       % (values["path"], values["encoding"], ", ".join(sorted(name for name in ENCODINGS if name))))
            return None
        try:
            data = decode_content(values.get("content", ""), encoding)
        except ValueError as exc:
            self.error(path + (fields.get("content", ("content",))[0],), "file %s: %s" % (values["path"], exc))
            return None
        return FileSpec(values["path"], data, mode, values.get("owner", ""))

    def unit(self, path: tuple, item: Any) -> Optional[UnitSpec]:
        known = ("name", "content", "enable", "command", "mask", "runtime", "drop_ins")
        if isinstance(item, dict) and "drop_ins" in item and "drop-ins" in item:
            self.error(path + ("drop-ins",), "a unit has both drop_ins and drop-ins: give one")
            return None
        fields = self.mapping(item, path, "a coreos.units entry", known)
        if not isinstance(item, dict):
            return None
        name = self.string(fields.get("name", ("name", None))[1], path + ("name",), "a unit name")
        if not name:
            self.error(path, "a coreos.units entry needs a name")
            return None
        if not UNIT_NAME.match(name):
            self.error(path + ("name",), "unit %r: the name must end in a unit type such as .service or .timer" % name)
            return None
        spec = UnitSpec(name)
        for field in ("enable", "mask", "runtime"):
            if field in fields:
                key, value = fields[field]
                setattr(spec, field, self.boolean(value, path + (key,), "unit %s: %s" % (name, field)))
        if "content" in fields:
            key, value = fields["content"]
            spec.content = self.string(value, path + (key,), "unit %s: content" % name)
        if "command" in fields:
            key, value = fields["command"]
            spec.command = self.string(value, path + (key,), "unit %s: command" % name)
            if spec.command and spec.command not in UNIT_COMMANDS:
                self.error(path + (key,), "unit %s: command %r is not one of %s"
                           % (name, spec.command, ", ".join(UNIT_COMMANDS)))
                return None
        if "drop_ins" in fields:
            key, value = fields["drop_ins"]
            for index, entry in enumerate(self.sequence(value, path + (key,), "unit %s: %s" % (name, key))):
                where = path + (key, index)
                drop_in = self.mapping(entry, where, "a drop-in of %s" % name, ("name", "content"))
                if not isinstance(entry, dict):
                    return None
                drop_in_name = self.string(drop_in.get("name", ("name", None))[1], where + ("name",), "a drop-in name")
                if not DROP_IN_NAME.match(drop_in_name):
                    self.error(where, "unit %s: drop-in name %r must end in .conf" % (name, drop_in_name))
                    return None
                content = self.string(drop_in.get("content", ("content", None))[1], where + ("content",), "content")
                spec.drop_ins.append(DropIn(drop_in_name, content))
        return spec


def decode_content(content: str, encoding: str) -> bytes:
    is_base64, is_gzip = ENCODINGS[encoding]
    if is_base64:
        try:
            data = base64.b64decode(content.encode("ascii"), validate=False)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueError("content is not valid base64: %s" % exc) from exc
    else:
        data = content.encode("utf-8", "surrogateescape")
    if is_gzip:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError("content is not valid gzip: %s" % exc) from exc
    return data


def plan_cloud_config(text: str) -> tuple:
    """(Plan, problems) for a cloud-config text; InvalidUserData when the YAML itself does not parse."""
    planner = _Planner(parse_yaml(text))
    plan = planner.plan()
    return plan, planner.problems


def validate(text: str) -> list:
    """Every problem of the user data, as --validate prints them."""
    kind = kind_of(text)
    if kind == "unknown":
        return [Problem(1, "error", "unrecognized user data format (expected #cloud-config or #!)")]
    if kind != "cloud-config":
        return []
    try:
        return plan_cloud_config(text)[1]
    except InvalidUserData as exc:
        return exc.problems


# --- applying -------------------------------------------------------------------------------------------


def under_root(root: str, path: str) -> str:
    # Like path.Join(root, path) in the real tool: a relative path counts from /, and .. cannot leave root.
    return os.path.join(root, os.path.normpath("/" + path).lstrip("/"))


def ensure_dir(path: str, mode: int = 0o755) -> None:
    """Create a missing directory with exactly `mode` (whatever the umask), missing parents with 0755."""
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise CloudinitError("%s exists and is not a directory" % path)
    ensure_dir(os.path.dirname(path))
    os.mkdir(path)
    os.chmod(path, mode)


def resolve_owner(owner: str) -> tuple:
    """(uid, gid) for "user", "user:group" or numeric ids; -1 leaves that id as it is, as chown does."""
    user, _sep, group = owner.partition(":")
    uid = gid = -1
    try:
        if user:
            uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise CloudinitError("Unknown owner %r: no such user or group" % owner) from exc
    return uid, gid


def write_atomic(path: str, data: bytes, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Write through a temporary file in the same directory and rename it, so no reader sees half a file."""
    directory = os.path.dirname(path)
    ensure_dir(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cloudinit-temp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if uid != -1 or gid != -1:
                os.fchown(handle.fileno(), uid, gid)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def determine_hostname(metadata: Metadata, plan: Optional[Plan]) -> str:
    """The cloud-config's hostname, else the metadata's, cut at the first dot and to 63 bytes, as Flatcar does."""
    hostname = (plan.hostname if plan and plan.hostname else "") or metadata.hostname
    return hostname.split(".")[0][:63]


def apply_hostname(root: str, hostname: str, runner: Runner) -> None:
    log("Setting hostname to %s" % hostname)
    try:
        write_atomic(under_root(root, "/etc/hostname"), (hostname + "\n").encode("utf-8"), 0o644)
    except OSError as exc:
        raise CloudinitError("Failed to write /etc/hostname: %s" % exc) from exc
    _run(runner, ["hostname", hostname], "Failed to set hostname %s" % hostname)


def apply_ssh_keys(root: str, keys: list, key_name: str = SSH_KEY_NAME) -> None:
    """Write the core user's keys as `update-ssh-keys -a coreos-cloudinit` does, then rebuild authorized_keys."""
    log("Authorizing %d SSH keys for user core" % len(keys))
    try:
        core = pwd.getpwnam("core")
        uid, gid = core.pw_uid, grp.getgrnam("core").gr_gid
    except KeyError:
        uid = gid = -1  # only in tests: every node image has the core user
    ssh_dir = under_root(root, "/home/core/.ssh")
    keys_dir = os.path.join(ssh_dir, "authorized_keys.d")
    authorized = os.path.join(ssh_dir, "authorized_keys")
    try:
        first_time = not os.path.isdir(keys_dir)
        for directory in (ssh_dir, keys_dir):
            ensure_dir(directory, 0o700)
            os.chmod(directory, 0o700)  # sshd refuses keys in a directory others can write
            if uid != -1:
                os.chown(directory, uid, gid)
        if first_time and os.path.isfile(authorized):
            # update-ssh-keys keeps keys put there by hand before it took the file over.
            with open(authorized, "rb") as handle:
                write_atomic(os.path.join(keys_dir, "old_authorized_keys"), handle.read(), 0o600, uid, gid)
        text = "".join(key.strip() + "\n" for key in keys if key.strip())
        write_atomic(os.path.join(keys_dir, key_name), text.encode("utf-8"), 0o600, uid, gid)
        parts = []
        for name in sorted(os.listdir(keys_dir)):
            path = os.path.join(keys_dir, name)
            if name.startswith(".") or not os.path.isfile(path):
                continue
            with open(path, "rb") as handle:
                content = handle.read()
            parts.append(content if not content or content.endswith(b"\n") else content + b"\n")
        write_atomic(authorized, b"".join(parts), 0o600, uid, gid)
    except OSError as exc:
        raise CloudinitError("Failed to write the core user's SSH keys under %s: %s" % (ssh_dir, exc)) from exc


def apply_files(root: str, files: list) -> None:
    for spec in files:
        dest = under_root(root, spec.path)
        log("Writing file %s (mode %04o%s)" % (spec.path, spec.mode, ", owner %s" % spec.owner if spec.owner else ""))
        uid, gid = resolve_owner(spec.owner) if spec.owner else (-1, -1)
        try:
            write_atomic(dest, spec.data, spec.mode, uid, gid)
        except OSError as exc:
            raise CloudinitError("Failed to write file %s: %s" % (spec.path, exc)) from exc


def apply_environment(root: str, metadata: Metadata, files: list) -> None:
    """Put COREOS_{PUBLIC,PRIVATE}_IPV{4,6} in /etc/environment, as the real Apply does unless write_files did."""
    if any(os.path.normpath("/" + spec.path) == "/etc/environment" for spec in files):
        return
    wanted = {name: value for name, value in (
        ("COREOS_PUBLIC_IPV4", metadata.public_ipv4), ("COREOS_PRIVATE_IPV4", metadata.private_ipv4),
        ("COREOS_PUBLIC_IPV6", metadata.public_ipv6), ("COREOS_PRIVATE_IPV6", metadata.private_ipv6)) if value}
    if not wanted:
        return
    path = under_root(root, "/etc/environment")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        lines = []
    out = []
    for line in lines:
        name = line.partition("=")[0].strip()
        if name in wanted:
            line = "%s=%s" % (name, wanted.pop(name))
        out.append(line)
    out.extend("%s=%s" % item for item in sorted(wanted.items()))
    log("Updating /etc/environment")
    try:
        write_atomic(path, ("\n".join(out) + "\n").encode("utf-8"), 0o644)
    except OSError as exc:
        raise CloudinitError("Failed to write /etc/environment: %s" % exc) from exc


def unit_dir(root: str, unit: UnitSpec) -> str:
    return under_root(root, "/run/systemd/system" if unit.runtime else "/etc/systemd/system")


def place_unit(root: str, unit: UnitSpec) -> None:
    """Write one unit's files, mask or unmask it (system/systemd.go PlaceUnit, MaskUnit, UnmaskUnit)."""
    dest = os.path.join(unit_dir(root, unit), unit.name)
    try:
        if unit.content:
            log('Writing unit "%s"' % unit.name)
            write_atomic(dest, unit.content.encode("utf-8"), 0o644)
        for drop_in in unit.drop_ins:
            if drop_in.content:
                log('Writing unit "%s" drop-in "%s"' % (unit.name, drop_in.name))
                write_atomic(os.path.join(dest + ".d", drop_in.name), drop_in.content.encode("utf-8"), 0o644)
        if unit.mask:
            # Like the real tool, and unlike `systemctl mask`, whatever file is there is replaced.
            log('Masking unit "%s"' % unit.name)
            ensure_dir(os.path.dirname(dest))
            if os.path.lexists(dest):
                os.unlink(dest)
            os.symlink("/dev/null", dest)
        elif unit.runtime and os.path.lexists(dest):
            # A runtime unit must not stay masked by an earlier boot's /dev/null link or empty file.
            target = os.stat(dest) if os.path.exists(dest) else None
            if target is not None and (os.path.samestat(target, os.stat("/dev/null")) or target.st_size == 0):
                log('Unmasking runtime unit "%s"' % unit.name)
                os.unlink(dest)
    except OSError as exc:
        raise CloudinitError("Failed to place unit %s: %s" % (unit.name, exc)) from exc


def apply_units(root: str, units: list, runner: Runner) -> None:
    """Place every unit, reload systemd once, enable, then queue the commands without waiting for them."""
    for unit in units:
        place_unit(root, unit)
    if units:
        log("Reloading systemd")
        _run(runner, ["systemctl", "daemon-reload"], "Failed systemd daemon-reload")
    for unit in units:
        if unit.enable:
            log('Enabling unit "%s"' % unit.name)
            argv = ["systemctl", "enable"] + (["--runtime"] if unit.runtime else []) + [unit.name]
            _run(runner, argv, 'Failed to enable unit "%s"' % unit.name)
    for unit in units:
        if unit.command:
            # The real tool queues the job over D-Bus and does not wait: a unit that waits for its peers
            # (etcd with discovery) does not hold up boot, and one that fails later does not fail cloudinit.
            log('Calling unit command "%s" on "%s"' % (unit.command, unit.name))
            _run(runner, ["systemctl", unit.command, "--no-block", unit.name],
                 'Failed to %s unit "%s"' % (unit.command, unit.name))


def run_script(root: str, script: bytes, runner: Runner) -> None:
    path = under_root(root, WORKSPACE + "/user-data-script")
    log("Running user data script %s as transient unit %s" % (path, SCRIPT_UNIT))
    try:
        ensure_dir(os.path.dirname(path))
        write_atomic(path, script, 0o700)
    except OSError as exc:
        raise CloudinitError("Failed to write the user data script to %s: %s" % (path, exc)) from exc
    _run(runner, ["systemd-run", "--unit=%s" % SCRIPT_UNIT, "--no-block", path],
         "Failed to start the user data script as %s" % SCRIPT_UNIT)


def apply_cloud_config(root: str, plan: Plan, metadata: Metadata, runner: Runner) -> None:
    for key in plan.skipped:
        log("skipping %s: not applied by the sandbox stand-in" % key)
    apply_files(root, plan.files)
    apply_environment(root, metadata, plan.files)
    apply_units(root, plan.units, runner)


# --- command line ---------------------------------------------------------------------------------------


def parse_args(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="coreos-cloudinit", allow_abbrev=False,
        description="Stand-in of the coreos_ec2.cluster sandbox for Flatcar's coreos-cloudinit.")
    parser.add_argument("--oem", default="", help="the OEM whose datasource to use; only ec2-compat")
    parser.add_argument("--from-file", default="", help="read user data from this file instead of the metadata service")
    parser.add_argument("--metadata-url", default="", help="EC2 metadata service (default %s)" % DEFAULT_METADATA_URL)
    parser.add_argument("--metadata-timeout", type=float, default=60.0,
                        help="seconds to keep retrying an unreachable metadata service")
    parser.add_argument("--root", default="/", help="write every file under this directory")
    parser.add_argument("--validate", action="store_true", help="check the user data, print problems, apply nothing")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser.parse_args(argv)


def main(argv: Optional[list] = None, runner: Optional[Runner] = None,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse has printed why
        return int(exc.code or 0)
    if args.oem and args.oem not in SUPPORTED_OEMS:
        log("Invalid option to --oem: %r. Supported options: %s" % (args.oem, ", ".join(SUPPORTED_OEMS)))
        return 2
    if args.version:
        print(VERSION_TEXT % VERSION)
        return 0
    if not args.oem and not args.from_file:
        log("Provide --oem=ec2-compat or --from-file")
        return 2
    if runner is None:
        runner = run_command if os.path.abspath(args.root) == "/" else dry_runner
    try:
        return _run_cloudinit(args, runner, sleep, clock)
    except CloudinitError as exc:
        log(str(exc))
        return 1


def _run_cloudinit(args: argparse.Namespace, runner: Runner, sleep: Callable[[float], None],
                   clock: Callable[[], float]) -> int:
    metadata = Metadata()
    user_data: Optional[bytes] = None
    url = args.metadata_url or (DEFAULT_METADATA_URL if not args.from_file else "")
    if url:
        log("Fetching meta-data and user-data from %s" % url)
        client = MetadataClient(url, args.metadata_timeout, sleep, clock)
        user_data, metadata = fetch_ec2(client, want_user_data=not args.from_file)
    if args.from_file:
        try:
            with open(args.from_file, "rb") as handle:
                user_data = handle.read()
        except OSError as exc:
            raise CloudinitError("Failed to read user data from %s: %s" % (args.from_file, exc)) from exc

    raw = decompress_if_gzip(user_data or b"").decode("utf-8", "surrogateescape")
    if args.validate:
        problems = validate(raw)
        for problem in problems:
            print(problem)
        return 1 if problems else 0

    text = substitute(raw, metadata)
    kind = kind_of(text)
    plan: Optional[Plan] = None
    failure = ""
    if user_data is None:
        log("no user data")
    elif kind == "unknown":
        failure = "unrecognized user data format: the first line must be #cloud-config or start with #!"
    elif kind == "cloud-config":
        try:
            plan, problems = plan_cloud_config(text)
        except InvalidUserData as exc:
            problems = exc.problems
        for problem in problems:
            log("user data: %s" % problem)
        if any(problem.level == "error" for problem in problems):
            plan, failure = None, "invalid cloud-config: nothing applied but the metadata's hostname and SSH keys"

    # As the real tool: hostname and SSH keys even when the user data is bad, so the node can be reached.
    stop = ""
    root = os.path.abspath(args.root)
    hostname = determine_hostname(metadata, plan)
    if hostname:
        try:
            apply_hostname(root, hostname, runner)
        except CloudinitError as exc:
            log(str(exc))
            stop = str(exc)
    keys = metadata.ssh_keys + (plan.ssh_keys if plan else [])
    if keys:
        apply_ssh_keys(root, keys)
    if failure or stop:
        raise CloudinitError(failure or "stopping after the failure to set the hostname")

    if kind == "script":
        run_script(root, text.encode("utf-8", "surrogateescape"), runner)
    elif plan is not None:
        apply_cloud_config(root, plan, metadata, runner)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
