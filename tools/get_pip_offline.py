# Copyright: Contributors to the coreos_ec2.cluster collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline stand-in for ansible-test's get-pip bootstrap script.

Every ansible-test sanity venv starts without pip and runs
``~/.ansible/test/cache/get_pip_<version>.py`` to get one; when that file is missing it downloads it
from ci-files.testing.ansible.com, which this machine cannot reach. tools/sanity.sh copies this file
to that name and puts the matching pip wheel (``pip download --no-deps pip==<version>``) beside it.

Like the real get-pip.py it runs pip from the wheel itself and installs pip into the running
interpreter with ``install --upgrade --force-reinstall``; unlike it, it looks for distributions only
in its own directory (``--no-index``), so it never needs the network. Any other wheel directory can
be named with GET_PIP_OFFLINE_WHEELHOUSE.

ansible-test calls it as ``python <quiet_pip wrapper> --disable-pip-version-check pip==24.2
--no-setuptools --no-wheel``; the wrapper runs this file with runpy, so sys.argv[1:] holds those
arguments. Without --no-setuptools/--no-wheel it asks for setuptools and wheel too (as get-pip.py
does when they are not importable), and their wheels must then sit in the same directory.
"""

import argparse
import glob
import importlib.util
import os
import sys
import tempfile
import zipfile

WHEELHOUSE_ENV = "GET_PIP_OFFLINE_WHEELHOUSE"


def find_pip_wheel(wheelhouse, requirements):
    """Return the pip wheel to run pip from: the version pinned in requirements, else the newest."""
    pinned = [r.split("==", 1)[1] for r in requirements if r.replace(" ", "").startswith("pip==")]
    pattern = "pip-%s-py3-none-any.whl" % (pinned[0] if pinned else "*")
    wheels = sorted(glob.glob(os.path.join(wheelhouse, pattern)))
    return wheels[-1] if wheels else None


def wanted(name, refused):
    """Mirror get-pip.py: add setuptools/wheel unless refused on the command line, in the
    environment (PIP_NO_SETUPTOOLS, PIP_NO_WHEEL) or already importable."""
    env_name = "PIP_NO_" + name.upper()
    return not refused and not os.environ.get(env_name) and importlib.util.find_spec(name) is None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Install pip from a local wheel (offline get-pip.py).")
    parser.add_argument("--no-setuptools", action="store_true")
    parser.add_argument("--no-wheel", action="store_true")
    opts, pip_args = parser.parse_known_args(argv)

    wheelhouse = os.environ.get(WHEELHOUSE_ENV) or os.path.dirname(os.path.abspath(__file__))
    extra = ["pip"]
    if wanted("setuptools", opts.no_setuptools):
        extra.append("setuptools")
    if wanted("wheel", opts.no_wheel):
        extra.append("wheel")

    wheel = find_pip_wheel(wheelhouse, pip_args)
    if wheel is None:
        sys.stderr.write(
            "get_pip_offline: no pip wheel matching %s in %s; run `pip download --no-deps pip==VERSION -d %s`\n"
            % (" ".join(a for a in pip_args if a.startswith("pip")) or "pip", wheelhouse, wheelhouse)
        )
        return 1

    # Run pip from an unpacked copy of the wheel, as get-pip.py runs it from its embedded zip:
    # unpacked, pip's vendored packages can read their data files normally.
    with tempfile.TemporaryDirectory(prefix="get-pip-offline-") as tmp:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tmp)
        sys.path.insert(0, tmp)
        from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

        return pip_main(
            ["install", "--no-index", "--find-links", wheelhouse, "--upgrade", "--force-reinstall"]
            + pip_args
            + extra
        )


if __name__ == "__main__":
    sys.exit(main())
