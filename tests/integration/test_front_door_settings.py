"""The front door's stage settings come from the template's parameters: a twin deployed with an allowed web origin
and a tiny upload throttle, as `sam deploy --parameter-overrides` would set them. (A module of its own: moto's
state is per process, so two twins cannot run at once.)"""

from __future__ import annotations

import time

import pytest
import requests

from local.twin import Twin, TwinSettings, free_port
from test_front_door import _team, new_photo


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    settings = TwinSettings(port=free_port(), stack_name="door-twin", capture_dir=tmp_path_factory.mktemp("capture"),
                            parameters={"CorsAllowedOrigins": "https://app.example.com",
                                        "UploadThrottlingRateLimit": "1", "UploadThrottlingBurstLimit": "2"})
    with Twin(settings) as running:
        yield running


def test_throttling_follows_the_template_and_answers_429(twin):
    team = _team(twin, "burst", "submit,read")
    answers = [new_photo(twin, team) for _ in range(6)]
    assert [a.status_code for a in answers[:2]] == [201, 201]
    throttled = [a for a in answers[2:] if a.status_code == 429]
    assert throttled and throttled[0].json() == {"message": "Too Many Requests"}
    time.sleep(1.2)
    assert new_photo(twin, team).status_code == 201  # refilled at the rate
    # Other routes keep the stage's default.
    assert all(requests.get(f"{twin.outputs['ApiUrl']}/photos/{'0' * 32}", timeout=10,
                            headers={"Authorization": f"Bearer {team['token']}"}).status_code == 404 for _ in range(6))


def test_cors_allows_only_the_configured_origin(twin):
    url = f"{twin.outputs['ApiUrl']}/photos"
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = requests.options(url, headers=preflight, timeout=10)
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    other = requests.options(url, headers={**preflight, "Origin": "https://evil.example"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers


def test_the_allowed_origin_may_also_upload_from_a_browser(twin):
    rules = twin.client("s3").get_bucket_cors(Bucket=twin.outputs["IntakeBucketName"])["CORSRules"]
    assert rules == [{"AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["POST"],
                      "AllowedHeaders": ["*"], "MaxAgeSeconds": 600}]
