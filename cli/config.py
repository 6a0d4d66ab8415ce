"""Where the control plane is and which admin token to use.

Precedence, highest first: the command-line flag, the environment (``TOLLWAY_CONTROL_PLANE``,
``TOLLWAY_ADMIN_TOKEN``), the config file (``$TOLLWAY_CONFIG`` or ``~/.config/tollway/config.yaml``, keys
``controlPlane`` and ``adminToken``), then the default ``http://127.0.0.1:7070`` (and no token).
Resolution is a pure function of its inputs; ``load_client_config`` is the thin shell that reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cli.errors import UsageError

DEFAULT_CONTROL_PLANE = "http://127.0.0.1:7070"
ENV_CONTROL_PLANE = "TOLLWAY_CONTROL_PLANE"
ENV_ADMIN_TOKEN = "TOLLWAY_ADMIN_TOKEN"
ENV_CONFIG = "TOLLWAY_CONFIG"


@dataclass(frozen=True)
class ClientConfig:
    control_plane: str
    admin_token: str | None


def default_config_path(env: Mapping[str, str]) -> Path:
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "tollway" / "config.yaml"


def read_config_file(path: Path, required: bool) -> dict[str, Any]:
    """The config file's mapping; {} when it does not exist (an error only if the user named it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise UsageError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must be a mapping with controlPlane and adminToken")
    return data


def resolve(
    flag_control_plane: str | None,
    flag_admin_token: str | None,
    env: Mapping[str, str],
    file: Mapping[str, Any],
) -> ClientConfig:
    control_plane = (
        flag_control_plane or env.get(ENV_CONTROL_PLANE) or _str(file.get("controlPlane")) or DEFAULT_CONTROL_PLANE
    )
    token = flag_admin_token or env.get(ENV_ADMIN_TOKEN) or _str(file.get("adminToken")) or None
    return ClientConfig(control_plane=normalize_url(control_plane), admin_token=token)


def normalize_url(url: str) -> str:
    """``host:port`` → ``http://host:port``; no trailing slash."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"control plane URL must be http(s)://HOST:PORT, got {url!r}")
    return url.rstrip("/")


def load_client_config(flag_control_plane: str | None, flag_admin_token: str | None) -> ClientConfig:
    env = dict(os.environ)
    has_url = bool(flag_control_plane or env.get(ENV_CONTROL_PLANE))
    has_token = bool(flag_admin_token or env.get(ENV_ADMIN_TOKEN))
    needs_file = not (has_url and has_token)
    file = read_config_file(default_config_path(env), required=bool(env.get(ENV_CONFIG))) if needs_file else {}
    return resolve(flag_control_plane, flag_admin_token, env, file)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
