"""The front door's client: a token by the client-credentials grant, POST /photos, the upload, GET /photos/{id}.

What another team's service does, in Python (docs/api.md has the same with curl). Tokens are kept until a
minute before they expire: a token request is the most expensive call of the four (docs/capacity.md).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# The media type of a photo, by its first bytes: the API asks for it and the upload policy fixes it.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
               (b"GIF89a", "image/gif"))
_FTYP_BRANDS = {b"avif": "image/avif", b"avis": "image/avif", b"heic": "image/heic", b"heix": "image/heic",
                b"mif1": "image/heif", b"msf1": "image/heif"}
TOKEN_MARGIN_S = 60


class ApiError(Exception):
    """The API, the token endpoint or the upload refused; the message says which and why."""


def media_type(head: bytes) -> str:
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        return _FTYP_BRANDS[head[8:12]]
    raise ApiError("not a PNG, JPEG, WebP, GIF, HEIC/HEIF or AVIF image")


def _message(answer: requests.Response) -> str:
    try:
        body = answer.json()
        return str(body.get("message") or body.get("error") or body)
    except ValueError:
        return answer.text[:200] or answer.reason


@dataclass
class Photo:
    id: str
    result_url: str
    state: dict[str, Any] | None = None


class FrontDoor:
    def __init__(self, api_url: str, token_url: str, client_id: str, client_secret: str, scope: str | None = None,
                 timeout_s: float = 30.0):
        self.api_url, self.token_url = api_url.rstrip("/"), token_url
        self._client, self._secret, self._scope, self._timeout = client_id, client_secret, scope, timeout_s
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self.http = requests.Session()
        # Throttled (429) and passing 5xx answers are retried with backoff, as AWS's SDKs do.
        retry = Retry(total=5, backoff_factor=0.2, status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=("GET", "POST"), respect_retry_after_header=True)
        self.http.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=32))
        self.http.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=32))

    def token(self) -> str:
        with self._lock:
            if self._token and time.monotonic() < self._token[1]:
                return self._token[0]
            data = {"grant_type": "client_credentials", **({"scope": self._scope} if self._scope else {})}
            answer = self.http.post(self.token_url, data=data, auth=(self._client, self._secret), timeout=self._timeout)
            if answer.status_code != 200:
                raise ApiError(f"the token endpoint refused ({answer.status_code}): {_message(answer)}")
            body = answer.json()
            self._token = (body["access_token"], time.monotonic() + body["expires_in"] - TOKEN_MARGIN_S)
            return self._token[0]

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}", **extra}

    def submit(self, path: Path, idempotency_key: str | None = None) -> Photo:
        """POST /photos, then the upload; a retried call with the same key is the same photo."""
        data = path.read_bytes()
        headers = self._headers(**{"Idempotency-Key": idempotency_key or str(uuid.uuid4())})
        answer = self.http.post(f"{self.api_url}/photos", json={"content_type": media_type(data[:16])},
                                headers=headers, timeout=self._timeout)
        if answer.status_code != 201:
            raise ApiError(f"POST /photos refused ({answer.status_code}): {_message(answer)}")
        photo = answer.json()
        upload = self.http.post(photo["upload"]["url"], data=photo["upload"]["fields"],
                                files={"file": (path.name, data, photo["upload"]["fields"]["Content-Type"])},
                                timeout=self._timeout)
        if upload.status_code not in (200, 201, 204):
            raise ApiError(f"the upload of {path.name} was refused ({upload.status_code}): {upload.text[:300]}")
        return Photo(photo["id"], photo["result_url"])

    def state(self, photo: Photo, wait_s: int = 0) -> dict[str, Any]:
        """GET /photos/{id}, holding the request up to ``wait_s`` seconds while it is pending."""
        answer = self.http.get(photo.result_url, params={"wait": wait_s} if wait_s else None,
                               headers=self._headers(), timeout=self._timeout + wait_s)
        if answer.status_code != 200:
            raise ApiError(f"GET /photos/{photo.id} refused ({answer.status_code}): {_message(answer)}")
        photo.state = answer.json()
        return photo.state

    def wait(self, photo: Photo, timeout_s: float) -> dict[str, Any]:
        """The photo's state once it is no longer pending, or at ``timeout_s``: long polls, which answer at once
        for a photo already decided."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.state(photo, wait_s=max(0, min(20, int(deadline - time.monotonic()))))
            if state["state"] != "pending" or time.monotonic() >= deadline:
                return state
