"""Whether this data plane holds each provider's credential, resolved when a snapshot is installed.

``credential_problem(provider, environ)`` answers "" when the credential is there, else the reason naming the
source that failed (the environment variable, the AWS profile or credential chain, the Google key file or
Application Default Credentials). It never needs the network and never says what a credential is:

- ``credential_env`` (OpenAI, Azure, Anthropic, Gemini keys; a Bedrock API key; a Vertex service-account key
  file's path): the variable must be set, non-empty and sendable in a header (for Vertex: name a readable file);
- Bedrock without it: botocore's chain for ``aws_profile`` (environment, shared config and credentials files,
  SSO, web identity, assume-role), without the sources that would need the network or run a program. A
  ``credential_process``, a container credentials endpoint, or an EC2 instance (which may have a role) count as
  present: the adapter resolves them at first use and reports what fails there;
- Vertex without it: Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's file), or
  Google Cloud's metadata server when this machine runs on Google Cloud.

``CredentialCheck`` is a ``SnapshotHolder`` companion: it resolves every provider while the snapshot is prepared
(any thread: it may read files) and hands the problems to ``Health`` when the snapshot is adopted, so a missing
credential shows at once and the request path only ever reads a dict.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from dataplane.core.health import Health
from tollway.pb import snapshot_pb2 as pb

# Where a Linux machine says whose cloud it runs in (read locally; no metadata request).
_DMI = Path("/sys/devices/virtual/dmi/id")
_AWS_CONTAINER_ENV = ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")

log = logging.getLogger(__name__)


def credential_problem(provider: pb.Provider, environ: Mapping[str, str]) -> str:
    """"" when ``provider``'s credential is present on this data plane, else why not (naming the source)."""
    if provider.type == "mock":
        return ""
    if provider.credential_env:
        return _env_problem(provider, environ)
    if provider.type == "bedrock":
        return aws_chain_problem(provider.aws_profile, environ)
    if provider.type == "vertex":
        return google_adc_problem(environ)
    return ""  # no credential configured (a local vLLM, say): nothing is sent, nothing can be missing


def _env_problem(provider: pb.Provider, environ: Mapping[str, str]) -> str:
    name = provider.credential_env
    value = environ.get(name)
    if value is None:
        return f"environment variable {name} is not set"
    if not value:
        return f"environment variable {name} is empty"
    if provider.type == "vertex":  # the variable names a service-account key file
        path = Path(value)
        if not path.is_file():
            return f"the service account key file named by environment variable {name} does not exist"
        if not os.access(path, os.R_OK):
            return f"the service account key file named by environment variable {name} is not readable"
        return ""
    if not value.isprintable():
        return f"environment variable {name} holds a value that cannot be sent in a header"
    return ""


def aws_chain_problem(profile: str, environ: Mapping[str, str]) -> str:
    """What botocore's chain finds for ``profile`` ("" for the default) without the network. Reads files."""
    from botocore.credentials import create_credential_resolver  # type: ignore[import-untyped]
    from botocore.exceptions import BotoCoreError, ProfileNotFound  # type: ignore[import-untyped]
    from botocore.session import Session  # type: ignore[import-untyped]

    where = f"profile {profile!r}" if profile else "the default profile"
    try:
        session = Session(profile=profile or None)
        resolver = create_credential_resolver(session)
        for method in ("custom-process", "container-role", "iam-role"):  # a program, or the network
            resolver.remove(method)
        if resolver.load_credentials() is not None:
            return ""
        config = session.full_config.get("profiles", {}).get(profile or "default", {})
    except ProfileNotFound:
        return f"AWS profile {profile!r} is not configured (shared config and credentials files)"
    except BotoCoreError as exc:  # botocore's message may quote a file's contents: its type only
        return f"the AWS credentials of {where} could not be loaded ({type(exc).__name__})"
    if isinstance(config, Mapping) and config.get("credential_process"):
        return ""
    if any(environ.get(v) for v in _AWS_CONTAINER_ENV) or _may_have_instance_role(environ):
        return ""
    return (f"AWS credential chain found no credentials ({where}: environment, shared config and credentials "
            "files; no container or instance role here)")


def _may_have_instance_role(environ: Mapping[str, str]) -> bool:
    """Whether EC2's instance metadata could hold a role: not disabled, and this machine is an EC2 instance (or an
    endpoint is configured explicitly)."""
    if environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return False
    if environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT"):
        return True
    return _dmi("sys_vendor").startswith("Amazon") or _dmi("board_asset_tag").startswith("i-") or \
        _read(Path("/sys/hypervisor/uuid")).lower().startswith("ec2")


def google_adc_problem(environ: Mapping[str, str]) -> str:
    """What Application Default Credentials would find, without asking the metadata server. Reads files."""
    explicit = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        if not Path(explicit).is_file():
            return ("Application Default Credentials: the file named by environment variable "
                    "GOOGLE_APPLICATION_CREDENTIALS does not exist")
        return ""
    from google.auth import _cloud_sdk

    if Path(_cloud_sdk.get_application_default_credentials_path()).is_file():  # type: ignore[no-untyped-call]
        return ""
    if environ.get("GCE_METADATA_HOST") or environ.get("K_SERVICE") or _dmi("product_name").startswith("Google") \
            or _dmi("bios_vendor").startswith("Google"):
        return ""  # the metadata server of Google Cloud (GCE, GKE, Cloud Run) serves them
    return ("Application Default Credentials found none (GOOGLE_APPLICATION_CREDENTIALS is not set, no gcloud "
            "application-default login, not on Google Cloud)")


def _dmi(name: str) -> str:
    return _read(_DMI / name)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


class CredentialCheck:
    """The ``SnapshotHolder`` companion that keeps ``health``'s view of missing credentials current, and logs each
    provider that comes to lack one (once, not per snapshot). Adopters run on the event loop, one at a time."""

    def __init__(self, health: Health, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._health = health
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._logged: dict[str, str] = {}

    def prepare(self, snapshot: pb.Snapshot) -> Callable[[], None]:
        found: dict[tuple[str, str, str], str] = {}  # providers sharing a source are resolved once
        problems: dict[str, str] = {}
        for p in snapshot.providers:
            source = (p.type, p.credential_env, p.aws_profile)
            if source not in found:
                found[source] = credential_problem(p, self._environ)
            if found[source]:
                problems[p.name] = found[source]
        return lambda: self._adopt(problems)

    def _adopt(self, problems: dict[str, str]) -> None:
        self._health.credentials_checked(problems, self._clock())
        for name, why in problems.items():
            if self._logged.get(name) != why:
                log.warning("provider %r has no credential on this data plane (%s): its deployments are not used",
                            name, why)
        self._logged = problems
