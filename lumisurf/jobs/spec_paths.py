"""The YAML spec files of ``lumisurf bench ablate`` and ``lumisurf batch``: reading them, ``${SHARED}``, paths
relative to the spec, names that become folder names."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from lumisurf.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
NAME_RE = re.compile(r"^[A-Za-z0-9+][A-Za-z0-9_.+=-]*$")  # variant and scene names become folder names


def default_shared() -> Path:
    """``$SHARED`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get("SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def resolve_dataset(value: str | None, spec_dir: Path) -> Path | None:
    """Absolute dataset folder for the spec's ``dataset`` value (None: the built-in scene)."""
    if value is None:
        return None
    if "${SHARED}" in value:
        value = value.replace("${SHARED}", str(default_shared()))
    path = Path(value).expanduser()
    return (path if path.is_absolute() else spec_dir / path).resolve()


def read_yaml_spec(path: Path, what: str):
    """The parsed YAML of spec file ``path`` (``what``: "ablation spec", "batch spec"); ConfigError when it is missing
    or not YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
