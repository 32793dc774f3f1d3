"""The review page end to end, as the stack serves it: uploads on the twin, reviewers added with
`python -m review add-reviewer`, a real headless Chromium (Debian's, driven by Playwright) signing in through
managed login and working through the queue with the keyboard; then the records, dispatch events, queue,
ground-truth manifest and metrics are checked with boto3. A second reviewer racing for a photo, a signed-in
non-reviewer and a signed-out browser see what they should. Screenshots go to build/screenshots/."""

from __future__ import annotations

import shutil
import time

import pytest

from local.twin import ROOT, Twin, TwinSettings, free_port
from review.__main__ import main as review_main
from review.requeue import requeue
from sign_in_helpers import TEMPORARY
from training.stage_data import read_manifest
from twin_helpers import SAMPLES, sample, subscribe_to_dispatch, wait_for

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium")
SCREENSHOTS = ROOT / "build" / "screenshots"
MALICIOUS_KEY = "drivers/<script>alert('key')</script><img src=x onerror=alert(1)>.png"
DELETED_KEY = "drivers/deleted-before-review.png"


@pytest.fixture(scope="module")
def twin():
    # A quarter of the confident images audited, so the demo set gives a handful of audit decisions.
    with Twin(TwinSettings(port=free_port(), stack_name="review-twin", parameters={"AuditRate": "0.25"})) as running:
        yield running


@pytest.fixture(scope="module")
def dispatch(twin):
    """A dispatch system's view: every event of ours on the default bus, delivered to a queue."""
    return subscribe_to_dispatch(twin, "dispatch-consumer")


@pytest.fixture(scope="module")
def uploads(twin, dispatch) -> dict[str, str]:
    """The 24 demo photos, a low-confidence photo under a key full of markup, and one deleted before review:
    {key: the true label}."""
    s3, bucket = twin.client("s3"), twin.outputs["IntakeBucketName"]
    truth = {}
    for path in sorted(SAMPLES.glob("*/*.png")):
        key = f"drivers/{path.parent.name}/{path.name}"
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        truth[key] = path.parent.name
    unsure = sample("bicycle", 0).read_bytes()  # bicycle_s_000066: the model says 0.85
    s3.put_object(Bucket=bucket, Key=MALICIOUS_KEY, Body=unsure)
    truth[MALICIOUS_KEY] = "bicycle"
    s3.put_object(Bucket=bucket, Key=DELETED_KEY, Body=unsure)
    truth[DELETED_KEY] = "unusable"
    wait_for(twin, set(truth))
    s3.delete_object(Bucket=bucket, Key=DELETED_KEY)
    return truth


@pytest.fixture(scope="module")
def page_url(twin, uploads) -> str:
    return twin.outputs["ReviewPageUrl"]


@pytest.fixture(scope="module")
def reviewers(twin) -> dict[str, str]:
    """ana and ben added as an operations lead adds them, and carl, a user who is no reviewer: {name: password}."""
    people = {}
    for name in ("ana", "ben"):
        assert review_main(["add-reviewer", name, "--email", f"{name}@example.com", "--port",
                            str(twin.settings.port)]) == 0
        people[name] = _set_password(twin, name)
    twin.client("cognito-idp").admin_create_user(UserPoolId=twin.outputs["UserPoolId"], Username="carl",
                                                 MessageAction="SUPPRESS", TemporaryPassword=TEMPORARY)
    people["carl"] = _set_password(twin, "carl")
    return people


def _set_password(twin, name: str) -> str:
    # The first sign-in's new-password form is covered in test_front_door_sign_in; here each person has theirs.
    password = f"{name.title()}-chose-1t"
    twin.client("cognito-idp").admin_set_user_password(UserPoolId=twin.outputs["UserPoolId"], Username=name,
                                                       Password=password, Permanent=True)
    return password


def _sign_in(browser, page_url: str, name: str, password: str, **context):
    """A fresh browser (no session) opening the page and signing in through managed login as ``name``."""
    page = browser.new_context(**context).new_page()
    page.goto(page_url)
    page.click("#sign-in")
    page.wait_for_selector("input[name=username]")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(page_url)
    # Selectors, not wait_for_function: they work under the page's Content-Security-Policy (no eval).
    page.wait_for_selector("#who:text-matches('^Signed in as'), #status:has-text('not a reviewer')")
    return page


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def _wait_for_status(page, key: str) -> None:
    """Until the status line reports on ``key`` (the page's answer to a decision)."""
    try:
        page.wait_for_function("key => document.getElementById('status').textContent.startsWith(key + ':')",
                               arg=key, timeout=15000)
    except Exception:
        raise AssertionError(f"no answer on {key!r}; status {page.text_content('#status')!r}, "
                             f"showing {page.text_content('#key')!r}") from None


def _waiting_records(twin) -> list[dict]:
    return [r for r in twin.results() if not r.get("decided_at") and (
        r["outcome"] == "needs_review" or (r["outcome"] == "classified" and r.get("audit")))]


def _metric_sum(twin, name: str) -> float:
    """What the review function counted (EMF documents in its log, as CloudWatch reads them)."""
    return sum(sum(doc[name]) if isinstance(doc[name], list) else doc[name] for doc in twin.metrics
               if name in doc and doc.get("EndpointName") == twin.endpoint_name
               and doc.get("service") == "vehicle-classifier")


def _queue_depth(twin) -> int:
    attributes = twin.client("sqs").get_queue_attributes(
        QueueUrl=twin.outputs["ReviewQueueUrl"], AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_signed_out_the_page_lists_nothing_and_offers_to_sign_in(twin, uploads, page_url, browser):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    response = page.goto(page_url)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("#status:text-matches('^Signed out')")
    assert page.is_visible("#sign-in") and not page.is_visible("#sign-out")
    assert page.locator("#queue li").count() == 0 and not page.is_visible("#current")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "review-signed-out.png"))


def test_a_signed_in_person_who_is_no_reviewer_is_told_so_and_shown_nothing(twin, uploads, page_url, browser,
                                                                             reviewers):
    page = _sign_in(browser, page_url, "carl", reviewers["carl"], viewport={"width": 1280, "height": 900})
    status = page.text_content("#status")
    assert status == ("carl is signed in but not a reviewer: an operations lead adds reviewers to the reviewers "
                      "group"), status
    assert page.locator("#queue li").count() == 0 and not page.is_visible("#current")
    page.screenshot(path=str(SCREENSHOTS / "review-not-a-reviewer.png"))


def test_a_reviewer_signs_in_and_resolves_every_waiting_photo_with_the_keyboard(twin, uploads, dispatch, page_url,
                                                                                 browser, reviewers):
    waiting = {r["key"]: r for r in _waiting_records(twin)}
    audited = {k for k, r in waiting.items() if r["outcome"] == "classified"}
    unsure = set(waiting) - audited
    assert {MALICIOUS_KEY, DELETED_KEY} <= unsure and audited, sorted(waiting)

    # Without the page's Content-Security-Policy (Playwright's waits evaluate script; and so the check below
    # proves the page escapes the key itself, not merely that the policy blocks what slipped through).
    page = _sign_in(browser, page_url, "ana", reviewers["ana"], bypass_csp=True,
                    viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    assert page.text_content("#who") == "Signed in as ana"
    page.wait_for_selector("#current:not([hidden])")
    listed = min(len(waiting), 10)  # a reviewer's list holds 10 at once; it tops up as they decide
    page.wait_for_function(f"document.querySelectorAll('#queue li').length === {listed}")
    assert page.text_content("#summary").startswith(f"{listed} on your list")
    page.wait_for_function("document.getElementById('photo').complete")
    page.screenshot(path=str(SCREENSHOTS / "review-desktop.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOTS / "review-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    decided: dict[str, str] = {}
    started = time.monotonic()
    while not page.is_visible("#empty"):
        key = page.text_content("#key")
        label = uploads[key]
        if key == DELETED_KEY:  # the page says the photo is gone; the reviewer rejects it
            page.wait_for_function("document.getElementById('photo-note').textContent.includes('deleted')")
        page.keyboard.press({"bicycle": "b", "motorcycle": "m", "unusable": "u"}[label])
        _wait_for_status(page, key)
        assert "(" in page.text_content("#status"), page.text_content("#status")  # "key: label (outcome)"
        decided[key] = label
        assert len(decided) <= len(waiting), "the page keeps offering decided photos"
        # The decided photo is off the screen as soon as its answer shows.
        assert page.is_visible("#empty") or page.text_content("#key") != key
        if page.is_visible("#empty") and len(decided) < len(waiting):
            page.keyboard.press("r")  # the list tops up from the queue
            page.wait_for_selector("#current:not([hidden])")
    seconds = time.monotonic() - started

    assert not page.is_visible("#current")  # nothing left on screen to decide
    # The key was shown as text: no script ran, no element was made of it.
    assert dialogs == []
    assert page.locator("#queue script, #queue img, #facts script, #facts img").count() == 0
    assert set(decided) == set(waiting)

    records = {r["key"]: r for r in twin.results()}
    for key in unsure:
        record = records[key]
        assert record["human_label"] == uploads[key] and record["reviewer"] == "ana", key
        assert record["outcome"] == ("rejected" if uploads[key] == "unusable" else "reviewed"), key
        assert record["decided_by"] == "person" and record["waited_seconds"] > 0 and record["effects_done_at"]
    for key in audited:
        record = records[key]
        assert record["outcome"] == "classified" and record["human_label"] == uploads[key], key
        assert record["agrees_with_model"] == (record["label"] == uploads[key]), key
    disagreements = {k for k in audited if records[k]["label"] != uploads[k]}

    people = [e for e in dispatch() if e["detail"].get("decided_by") == "person"]
    assert sorted(e["detail"]["key"] for e in people) == sorted(unsure | disagreements)
    for event in people:
        label = uploads[event["detail"]["key"]]
        assert event["detail-type"] == ("Photo Rejected" if label == "unusable" else "Vehicle Classified")
        assert event["detail"]["label"] == label and event["detail"]["reviewer"] == "ana"

    lines = list(read_manifest(twin.client("s3"), twin.outputs["GroundTruthBucketName"], "manifest/"))
    # Every decision but the one on the deleted photo adds a labelled image.
    assert sorted(line["vehicle-class-metadata"]["original-source-ref"].split("/", 3)[3] for line in lines) == \
        sorted(set(decided) - {DELETED_KEY})
    assert {line["vehicle-class-metadata"]["reviewer"] for line in lines} == {"ana"}
    assert _queue_depth(twin) == 0
    assert _metric_sum(twin, "ReviewDecisions") == len(decided)
    assert _metric_sum(twin, "AuditDecisions") == len(audited)
    assert _metric_sum(twin, "AuditAgreements") == len(audited) - len(disagreements)
    print(f"\nreview page: {len(decided)} photos decided with the keyboard in {seconds:.1f} s "
          f"({len(unsure)} unsure, {len(audited)} audit, audit accuracy {len(audited) - len(disagreements)}/"
          f"{len(audited)}); {len(people)} dispatch events by a person; {len(lines)} manifest lines")


def test_two_reviewers_racing_for_one_photo_one_wins_and_the_other_gets_the_409(twin, uploads, page_url, browser,
                                                                                 reviewers):
    key = "race/unsure.png"
    twin.client("s3").put_object(Bucket=twin.outputs["IntakeBucketName"], Key=key,
                                 Body=sample("bicycle", 0).read_bytes())
    assert wait_for(twin, {key})[key]["outcome"] == "needs_review"
    screens = {"ana": _sign_in(browser, page_url, "ana", reviewers["ana"], bypass_csp=True)}
    # A second copy of its review message (python -m review requeue): ben's list gets the photo too.
    requeue(twin.client("dynamodb"), twin.client("sqs"), twin.outputs["ResultsTableName"],
            twin.outputs["ReviewQueueUrl"])
    # Ben's browser keeps the page's Content-Security-Policy: sign-in, the list and the preview work under it.
    screens["ben"] = _sign_in(browser, page_url, "ben", reviewers["ben"], viewport={"width": 1280, "height": 900})
    for page in screens.values():
        page.wait_for_selector(f"#key:text-is('{key}')", timeout=20000)
    assert screens["ben"].locator("#photo").evaluate("img => img.complete && img.naturalWidth") > 0

    screens["ana"].keyboard.press("b")
    _wait_for_status(screens["ana"], key)
    screens["ben"].keyboard.press("m")
    screens["ben"].wait_for_selector(f"#status:text-matches('^{key}: ')")
    assert screens["ana"].text_content("#status") == f"{key}: bicycle (reviewed)"
    assert screens["ben"].text_content("#status").startswith(f"{key}: already decided by ana at ")
    screens["ben"].screenshot(path=str(SCREENSHOTS / "review-conflict.png"))
    record = {r["key"]: r for r in twin.results()}[key]
    assert record["reviewer"] == "ana" and record["human_label"] == "bicycle"


def test_signing_out_ends_the_session_and_lists_nothing(twin, uploads, page_url, browser, reviewers):
    page = _sign_in(browser, page_url, "ana", reviewers["ana"])
    page.click("#sign-out")
    page.wait_for_url(page_url)
    page.wait_for_selector("#status:text-matches('^Signed out')")
    assert page.locator("#queue li").count() == 0 and page.is_visible("#sign-in")
    assert page.evaluate("sessionStorage.length") == 0
    # Managed login's session ended too: signing in again asks for the password.
    page.click("#sign-in")
    page.wait_for_selector("input[name=password]")
