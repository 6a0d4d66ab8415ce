"""The fake Vertex AI (``FakeVertex``, started by ``fake_vertex``): throwaway service accounts
(``ServiceAccountKey``, ``new_service_account_key``), the OAuth 2.0 token endpoint (the JWT-bearer grant, its
access tokens) and the prediction service: bearer tokens, project and location, countTokens, text embeddings
through ``:predict`` and embedContent; the generation is ``_Upstream``'s."""

from __future__ import annotations

import base64
import binascii
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex, token_urlsafe
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import orjson
from aiohttp import web

from tests.fakes.google_upstream.errors import (
    _VERTEX_DOCS,
    API_KEY_NOT_SUPPORTED,
    INVALID_CREDENTIALS,
    MISSING_CREDENTIALS,
    _error_info,
    _json,
    google_error,
)
from tests.fakes.google_upstream.prelude import Received
from tests.fakes.google_upstream.tokens import (
    EMBEDDING_INPUT_TOKENS,
    _billable,
    billable_characters,
    embedding_values,
    prompt_token_details,
    text_tokens,
)
from tests.fakes.google_upstream.upstream import _content_text, _serve, _Upstream
from tests.fakes.google_upstream.wire import _ENUMS

if TYPE_CHECKING:
    from google.oauth2 import service_account as google_service_account

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
VERTEX_MODELS = frozenset({"gemini-2.0-flash-001", "gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-flash-lite",
                           "gemini-2.5-pro", "gemini-3-pro-preview"})
VERTEX_EMBEDDING_MODELS = {"text-embedding-005": 768, "text-multilingual-embedding-002": 768,
                           "gemini-embedding-001": 3072}


@dataclass(frozen=True)
class ServiceAccountKey:
    """A throwaway service account: an RSA key pair under an email, and the JSON key file that names it."""

    client_email: str
    private_key_id: str
    private_key_pem: str
    public_key_pem: str
    project_id: str

    def info(self, token_uri: str) -> dict[str, str]:
        """The JSON key file's content, with ``token_uri`` where google-auth will ask for tokens."""
        return {"type": "service_account", "project_id": self.project_id, "private_key_id": self.private_key_id,
                "private_key": self.private_key_pem, "client_email": self.client_email,
                "client_id": str(int(self.private_key_id[:12], 16)), "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": token_uri, "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
                                        + quote(self.client_email),
                "universe_domain": "googleapis.com"}

    def write(self, path: Path, token_uri: str) -> Path:
        """Write the JSON key file to ``path`` (mode 0600) and return it."""
        path.write_bytes(orjson.dumps(self.info(token_uri), option=orjson.OPT_INDENT_2))
        path.chmod(0o600)
        return path


def new_service_account_key(project_id: str = "fake-project", name: str = "tollway-test") -> ServiceAccountKey:
    """A new service account ``{name}@{project_id}.iam.gserviceaccount.com`` with a fresh 2048-bit RSA key (made
    with ``cryptography``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return ServiceAccountKey(client_email=f"{name}@{project_id}.iam.gserviceaccount.com", private_key_id=token_hex(20),
                             private_key_pem=private, public_key_pem=public, project_id=project_id)


@dataclass
class IssuedToken:
    client_email: str
    scopes: frozenset[str]
    expires_at: float


def _b64json(segment: str) -> Any:
    return orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@dataclass
class FakeVertex(_Upstream):
    """Knobs and records of one fake Vertex AI endpoint (and its OAuth token endpoint); owned by one test."""

    vertex: ClassVar[bool] = True
    project: str = "fake-project"
    location: str = "us-central1"
    reply: str = "Hello from the fake Vertex Gemini, word by word."
    models: frozenset[str] = VERTEX_MODELS
    embedding_models: dict[str, int] = field(default_factory=lambda: dict(VERTEX_EMBEDDING_MODELS))
    token_lifetime_s: int = 3599
    trusted: dict[str, ServiceAccountKey] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    token_requests: list[Received] = field(default_factory=list)
    token_uri: str = ""
    service_account: ServiceAccountKey | None = None
    credentials_file: Path | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/{version}/projects/{project}/locations/{location}/publishers/{publisher}/models/{call}",
                            self._route)
        return app

    def trust(self, key: ServiceAccountKey) -> None:
        """Accept JWTs signed by ``key`` at the token endpoint."""
        self.trusted[key.client_email] = key

    def expire_tokens(self) -> None:
        """Make every access token issued so far expired (the credentials holding them do not know)."""
        for issued in self.tokens.values():
            issued.expires_at = time.time() - 1

    def credentials(self, scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,)) -> google_service_account.Credentials:
        """google-auth service-account credentials from ``credentials_file`` (their token_uri is the fake's)."""
        from google.oauth2 import service_account

        assert self.credentials_file is not None
        credentials: google_service_account.Credentials = (
            service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(self.credentials_file), scopes=list(scopes)))
        return credentials

    # -- the OAuth 2.0 token endpoint -------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(Received(request.path, dict(request.query), dict(request.headers), form))
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        email, scopes, problem = self._verify(form.get("assertion", ""))
        if problem is not None:
            return problem
        token = "ya29.c." + token_urlsafe(48)
        self.tokens[token] = IssuedToken(email, scopes, time.time() + self.token_lifetime_s)
        return _json({"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"})

    def _verify(self, assertion: str) -> tuple[str, frozenset[str], web.Response | None]:
        from google.auth import crypt

        segments = assertion.split(".")
        if len(segments) != 3:
            return "", frozenset(), _oauth_error("invalid_request", "Invalid JWT")
        try:
            header, claims = _b64json(segments[0]), _b64json(segments[1])
            signature = base64.urlsafe_b64decode(segments[2] + "=" * (-len(segments[2]) % 4))
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            return "", frozenset(), _oauth_error("invalid_request", "Invalid JWT")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return "", frozenset(), _oauth_error("invalid_request", "Invalid JWT")
        key = self.trusted.get(str(claims.get("iss", "")))
        if key is None:
            return "", frozenset(), _oauth_error("invalid_grant", "Invalid grant: account not found")
        verifier = crypt.RSAVerifier.from_string(key.public_key_pem)  # type: ignore[no-untyped-call]
        if (header.get("alg") != "RS256" or header.get("kid", key.private_key_id) != key.private_key_id
                or not verifier.verify(f"{segments[0]}.{segments[1]}".encode(), signature)):
            return "", frozenset(), _oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") not in (GOOGLE_TOKEN_URI, "https://www.googleapis.com/oauth2/v4/token", self.token_uri):
            return "", frozenset(), _oauth_error("invalid_grant", "Invalid JWT: Failed audience check.")
        now, iat, exp = time.time(), claims.get("iat"), claims.get("exp")
        if (not isinstance(iat, int | float) or not isinstance(exp, int | float) or exp < now or iat > now + 300
                or exp - iat > 3600):
            return "", frozenset(), _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 "
                                                 "minutes) and in a reasonable timeframe. Check your iat and exp "
                                                 "values in the JWT claim.")
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes:
            return "", frozenset(), _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        return key.client_email, scopes, None

    # -- the prediction service -------------------------------------------------------------------------------

    def _auth(self, request: web.Request, version: str, method: str) -> web.Response | None:
        rpc = method[:1].upper() + method[1:]
        metadata = {"method": f"google.cloud.aiplatform.{version}.PredictionService.{rpc}",
                    "service": "aiplatform.googleapis.com"}
        header = request.headers.get("Authorization", "")
        if not header:
            keyed = request.headers.get("x-goog-api-key") or request.query.get("key")
            return google_error(401, API_KEY_NOT_SUPPORTED if keyed else MISSING_CREDENTIALS,
                                [_error_info("CREDENTIALS_MISSING", "googleapis.com", metadata)])
        issued = self.tokens.get(header[7:]) if header.startswith("Bearer ") else None
        if issued is None or issued.expires_at <= time.time():
            reason = "ACCESS_TOKEN_EXPIRED" if issued is not None else "ACCESS_TOKEN_TYPE_UNSUPPORTED"
            return google_error(401, INVALID_CREDENTIALS, [_error_info(reason, "googleapis.com", metadata)])
        if CLOUD_PLATFORM_SCOPE not in issued.scopes:
            return google_error(403, "Request had insufficient authentication scopes.", [
                _error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "googleapis.com", metadata)])
        return None

    def _resource(self, request: web.Request, model: str) -> str:
        info = request.match_info
        return f"projects/{info['project']}/locations/{info['location']}/publishers/{info['publisher']}/models/{model}"

    async def _route(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        version = info["version"]
        model, _, method = info["call"].rpartition(":")
        raw, ok = await self._read(request)
        if version not in ("v1", "v1beta1"):
            return google_error(404, "Method not found.")
        refused = self._auth(request, version, method)
        if refused is not None:
            return refused
        message = {"generateContent": "GenerateContentRequest", "streamGenerateContent": "GenerateContentRequest",
                   "countTokens": "CountTokensRequest", "predict": "PredictRequest",
                   "embedContent": "EmbedContentRequest"}.get(method)
        if message is None:
            return google_error(404, "Method not found.")
        if info["project"] != self.project:
            permission = "aiplatform.endpoints.predict"
            resource = f"//aiplatform.googleapis.com/{self._resource(request, model)}"
            return google_error(403, f"Permission '{permission}' denied on resource '{resource}' (or it may not "
                                     "exist).", [_error_info("IAM_PERMISSION_DENIED", "aiplatform.googleapis.com",
                                                             {"permission": permission, "resource": resource})])
        if info["location"] != self.location:
            return google_error(400, "Request contains an invalid argument.")
        body, refused = self._parse(raw, ok, message, version)
        if refused is not None:
            return refused
        embedding = method in ("predict", "embedContent")
        known = (model in self.models or model in self.embedding_models) if method == "countTokens" else (
            model in (self.embedding_models if embedding else self.models))
        if method == "predict" and model in self.models:
            return google_error(400, "Gemini cannot be accessed through Vertex Predict/RawPredict API. Please follow "
                                     "https://cloud.google.com/vertex-ai/docs/generative-ai/start/quickstarts/"
                                     "quickstart-multimodal for Gemini usage.", status="FAILED_PRECONDITION")
        if info["publisher"] != "google" or not known:
            return google_error(404, f"Publisher Model `{self._resource(request, model)}` was not found or your "
                                     "project does not have access to it. Please ensure you are using a valid model "
                                     "version. For more information, see: "
                                     "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions")
        if method in ("generateContent", "streamGenerateContent"):
            problem = self._check_generate(body, model, "GenerateContentRequest")
        elif method == "countTokens":
            problem = None if body.get("contents") or body.get("instances") else (
                "Unable to submit request because it must include at least one parts field, which describes the "
                f"prompt input. {_VERTEX_DOCS}")
        elif method == "predict":
            problem = self._check_predict(body, model)
        else:
            problem = (None if _content_text(body.get("content")) else "Unable to submit request because it has an "
                       f"empty text parameter. Add a value to the parameter and try again. {_VERTEX_DOCS}") or (
                self._embedding_dims(model, (body.get("embedContentConfig") or {}).get("outputDimensionality"),
                                     "")[1])
        if problem:
            return google_error(400, problem)
        answer = await self._knobs(request)
        if answer is not None:
            return answer
        if method == "countTokens":
            details = prompt_token_details(body)
            return _json({"totalTokens": sum(details.values()), "totalBillableCharacters": billable_characters(body),
                          "promptTokensDetails": [{"modality": m, "tokenCount": n} for m, n in details.items()]})
        if method == "predict":
            return _json(self._predict(body, model))
        if method == "embedContent":
            return _json(self._embed_content(body, model))
        return await self._generate(request, body, model, stream=method == "streamGenerateContent")

    def _check_predict(self, body: dict[str, Any], model: str) -> str | None:
        instances = body.get("instances") or []
        if not instances:
            return "Instances field is required."
        if len(instances) > 250:
            return f"The number of instances ({len(instances)}) exceeds the limit of 250 per request."
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict) or not isinstance(instance.get("content"), str):
                return f"instances[{i}].content: a text content is required."
            task = instance.get("task_type", instance.get("taskType"))
            if task is not None and task not in _ENUMS["TaskType"][1]:
                return f"instances[{i}].task_type: unsupported task type {task}."
        parameters: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
        return self._embedding_dims(model, parameters.get("outputDimensionality"), "")[1]

    def _predict(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        parameters: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
        dims = self._embedding_dims(model, parameters.get("outputDimensionality"), "")[0]
        predictions, billable = [], 0
        for instance in body["instances"]:
            text = instance["content"]
            tokens = text_tokens(text)
            billable += _billable(text)
            values = embedding_values(text, dims, self.embedding_models[model],
                                      str(instance.get("task_type", instance.get("taskType")) or ""))
            predictions.append({"embeddings": {"statistics": {"truncated": tokens > EMBEDDING_INPUT_TOKENS,
                                                              "token_count": min(tokens, EMBEDDING_INPUT_TOKENS)},
                                               "values": values}})
        return {"predictions": predictions, "metadata": {"billableCharacterCount": billable}}

    def _embed_content(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        config = body.get("embedContentConfig") or {}
        dims = self._embedding_dims(model, config.get("outputDimensionality"), "")[0]
        text = _content_text(body.get("content"))
        tokens = text_tokens(text)
        return {"embedding": {"values": embedding_values(text, dims, self.embedding_models[model],
                                                         str(config.get("taskType") or ""))},
                "usageMetadata": {"promptTokenCount": min(tokens, EMBEDDING_INPUT_TOKENS),
                                  "totalTokenCount": min(tokens, EMBEDDING_INPUT_TOKENS)},
                "truncated": tokens > EMBEDDING_INPUT_TOKENS}


def _oauth_error(error: str, description: str) -> web.Response:
    """The token endpoint's error: 400 ``{"error", "error_description"}`` (RFC 6749 section 5.2)."""
    return _json({"error": error, "error_description": description}, status=400)


@asynccontextmanager
async def fake_vertex(project: str = "fake-project", location: str = "us-central1",
                      service_account: ServiceAccountKey | None = None) -> AsyncIterator[FakeVertex]:
    """Start a fake Vertex AI; its service account (``service_account``, else a new one) is trusted and written,
    with ``token_uri`` = ``fake.token_uri``, to ``fake.credentials_file`` (removed on exit)."""
    fake = FakeVertex(project=project, location=location)
    fake.service_account = service_account or new_service_account_key(project)
    fake.trust(fake.service_account)
    runner, fake.base_url = await _serve(fake.app())
    fake.token_uri = f"{fake.base_url}/token"
    try:
        with tempfile.TemporaryDirectory(prefix="fake-vertex-") as tmp:
            fake.credentials_file = fake.service_account.write(Path(tmp) / "service-account.json", fake.token_uri)
            yield fake
    finally:
        await runner.cleanup()
