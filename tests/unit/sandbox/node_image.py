# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the sandbox's files are, for the tests here: the node image tree and the host package."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FILES = Path(__file__).resolve().parents[3] / "roles" / "sandbox" / "files"
IMAGE = FILES / "node-image"


def load_program(path_in_image: str, module_name: str) -> ModuleType:
    """A Python program of the node image, stored as <path>.py without an interpreter line, as a module."""
    loader = importlib.machinery.SourceFileLoader(module_name, str(IMAGE / path_in_image.lstrip("/")))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being built
    sys.modules[loader.name] = module
    loader.exec_module(module)
    return module
