"""The review page's web application (Flask): the waiting images, each image, and decisions.

Safety: it binds to 127.0.0.1 unless told otherwise and answers only to the host names it serves
(TRUSTED_HOSTS, against DNS rebinding); every decision carries a CSRF token (Flask-WTF) bound to the
page's session cookie (SameSite=Strict); the page renders object keys - user input - as text, never as
markup, and shows images re-encoded as PNG from this server, so neither a key nor a file can inject
anything, and the browser never sees an S3 URL or any AWS credential.
"""

from __future__ import annotations

import io
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError
from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from PIL import Image, UnidentifiedImageError

from review.decisions import UNUSABLE, Decision, DecisionError, Reviewer, State
from review.waiting import WaitingImage, WaitingImages

log = logging.getLogger("review")

PREVIEW_SIDE = 512  # pixels: CIFAR's 32 px photos are drawn larger by the browser, phone photos smaller
MAX_PREVIEW_PIXELS = 40_000_000  # the serialize function's MAX_IMAGE_PIXELS: no decompression bombs
REFRESH_SECONDS = 2.0  # the page asks often; the queue is read at most this often
MAX_REVIEWER_LENGTH = 64

try:  # phones upload HEIC; the twin's packages include pillow-heif, a deployed reviewer's may not
    from pillow_heif import register_heif_opener
    register_heif_opener()
except ImportError:  # pragma: no cover - depends on the installation
    pass


@dataclass
class ReviewService:
    """What the page works on: the held messages and the decision-taker, kept current by ``refresh``."""
    waiting: WaitingImages
    reviewer: Reviewer
    s3: object
    description: str
    _last_refresh: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # What became of images decided on this page, by id: a second reviewer on the page is told who won.
    _decided: dict[str, str] = field(default_factory=dict)

    def decided_elsewhere(self, image_id: str) -> str:
        return self._decided.get(image_id, "this image is no longer waiting here (decided, or taken by another page)")

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            if not force and time.monotonic() - self._last_refresh < REFRESH_SECONDS:
                return
            self.waiting.refresh()
            for image in self.waiting.images(include_hidden=True):
                if image.needs_check:
                    self._check(image)
            self._last_refresh = time.monotonic()

    def _check(self, image: WaitingImage) -> None:
        """Settle a held message whose image needs no person any more: decided (after taking over effects
        a stopped page left unfinished) or uploaded again since. A decision whose effects another page is
        running hides the image and is checked again at the next refresh."""
        state = self.reviewer.state(image)
        image.needs_check = state in (State.NOT_RECORDED, State.IN_PROGRESS, State.ABANDONED)
        image.hidden = state != State.WAITING and state != State.NOT_RECORDED
        if state == State.ABANDONED:
            decision = self.reviewer.take_over(image)
            if decision is None:
                return  # another page took it over
            log.info("finishing the recorded decision on %s, left unfinished by its page", image.key)
            self.reviewer.finish(decision)
            state = State.SETTLED
        if state == State.SETTLED:
            self.waiting.settle(image)

    def decide(self, image: WaitingImage, label: str, reviewer: str) -> Decision:
        """Record the decision, run its effects, then delete the message. Refused as decided or superseded,
        the image's message is checked at once (settled, or hidden until the winner's effects are done);
        failing half-way, the message stays, and a page takes the effects over after the grace period."""
        try:
            decision = self.reviewer.decide(image, label, reviewer)
        except DecisionError as exc:
            if exc.status == 409:
                with self._lock:
                    self._check(image)
            raise
        self.waiting.settle(image)
        self._decided[image.id] = (f"already decided by {reviewer} at {decision.decided_at}: {label}")
        self.reviewer.count_backlog(image.endpoint_name, len(self.waiting.images()) + self.waiting.elsewhere())
        return decision

    def keep_fresh(self, stop: threading.Event, every: float = 30.0) -> threading.Thread:
        """A daemon thread that extends the holds while nobody looks at the page."""
        def loop() -> None:
            while not stop.wait(every):
                try:
                    self.refresh(force=True)
                except (BotoCoreError, ClientError) as exc:
                    log.warning("cannot refresh the review queue: %s", exc)
        thread = threading.Thread(target=loop, name="review-refresh", daemon=True)
        thread.start()
        return thread


def preview_png(data: bytes) -> bytes:
    """Any image Pillow reads, as a PNG no larger than PREVIEW_SIDE (first frame of an animation)."""
    Image.MAX_IMAGE_PIXELS = MAX_PREVIEW_PIXELS
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        rgb = image.convert("RGB")
    rgb.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return out.getvalue()


def create_app(service: ReviewService, default_reviewer: str, trusted_hosts: list[str] | None = None,
               clock: Callable[[], float] = time.time) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_HTTPONLY=True, WTF_CSRF_TIME_LIMIT=None, TRUSTED_HOSTS=trusted_hosts)
    CSRFProtect(app)

    @app.after_request
    def harden(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(CSRFError)
    def refuse_forgery(error: CSRFError):
        return jsonify(error=f"refused: {error.description} - reload the page"), 400

    @app.errorhandler(ClientError)
    @app.errorhandler(BotoCoreError)
    def aws_error(error: Exception):
        log.warning("AWS call failed: %s", error)
        return jsonify(error=f"AWS call failed: {error}"), 502

    @app.get("/")
    def page():
        return render_template("review.html", reviewer=default_reviewer, where=service.description,
                               unusable=UNUSABLE)

    @app.get("/api/waiting")
    def waiting():
        service.refresh(force=request.args.get("fresh") == "1")
        now = clock()
        images = service.waiting.images()
        return jsonify(images=[image.as_json(now) for image in images], count=len(images),
                       oldest_seconds=round(now - images[0].sent_at, 1) if images else 0,
                       elsewhere=service.waiting.elsewhere())

    @app.get("/images/<image_id>")
    def image(image_id: str):
        held = service.waiting.find(image_id)
        if held is None:
            return jsonify(error="not waiting on this page"), 404
        try:
            data = service.s3.get_object(Bucket=held.bucket, Key=held.key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return jsonify(error="the image was deleted from the bucket"), 410
            raise
        try:
            return Response(preview_png(data), mimetype="image/png")
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            return jsonify(error=f"the file is not a readable image: {exc}"), 415

    @app.post("/api/decisions")
    def decide():
        body = request.get_json(silent=True) or {}
        image_id, label = str(body.get("id", "")), str(body.get("label", ""))
        reviewer = " ".join(str(body.get("reviewer", "")).split())
        if not reviewer or len(reviewer) > MAX_REVIEWER_LENGTH:
            return jsonify(error=f"reviewer: a name of 1 to {MAX_REVIEWER_LENGTH} characters"), 400
        held = service.waiting.find(image_id)
        if held is None:
            return jsonify(error=service.decided_elsewhere(image_id)), 409
        try:
            decision = service.decide(held, label, reviewer)
        except DecisionError as exc:
            return jsonify(error=str(exc)), exc.status
        remaining = len(service.waiting.images())
        log.info("%s decided %s: %s (model %s)", reviewer, held.key, label, held.label)
        return jsonify(key=held.key, outcome=decision.outcome, human_label=decision.human_label,
                       agrees=decision.agrees, remaining=remaining)

    return app
