"""Every upload, exactly one true record: bad and awkward uploads, many at once, as an outside client sends them.

`make test-reliability` runs this suite alone; `make test` runs it with the rest. The overwrite races
(test_twin_overwrites.py), the outage and its re-drive (test_twin_endpoint_outage.py) and the injected faults
(test_twin_faults.py) carry the same marker.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config

from twin_helpers import sample, wait_for
from upload_corpus import corpus

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def s3_client(twin, threads: int):
    """An S3 client with a connection per uploading thread, as a user's would be configured."""
    return boto3.client("s3", endpoint_url=twin.url, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local", config=Config(max_pool_connections=threads))


def test_every_kind_of_upload_ends_in_one_true_record(twin):
    uploads = corpus("corpus")
    assert len({u.kind for u in uploads}) >= 30
    bucket, s3 = twin.outputs["IntakeBucketName"], twin.client("s3")
    for upload in uploads:
        s3.put_object(Bucket=bucket, Key=upload.key, Body=upload.body)
    s3.put_object(Bucket=bucket, Key="corpus/folder/", Body=b"")  # the console's folder marker: no record

    records = wait_for(twin, {u.key for u in uploads}, timeout=180)
    rows, wrong = [], []
    for upload in uploads:
        record = records[upload.key]  # keyed by the literal key, whatever its characters
        got = (record["outcome"], record.get("reason") if record["outcome"] == "failed" else None)
        rows.append(f"{upload.kind:<40} {got[0]:<13} {got[1] or ''}")
        if got[0] not in upload.outcomes or (upload.reason and got[1] != upload.reason):
            wrong.append(f"{upload.kind}: {got}, expected {upload.outcomes} {upload.reason or ''}")
    print("\n".join(rows))
    assert not wrong, wrong
    # one record per object: nothing else under the prefix (no URL-encoded twin, no folder marker)
    under_prefix = [r for r in twin.results() if r["key"].startswith("corpus/")]
    assert sorted(r["key"] for r in under_prefix) == sorted(u.key for u in uploads)


def test_a_thousand_uploads_from_many_clients_lose_nothing(twin):
    keys = [f"thousand/{i:04d}.png" for i in range(1000)]
    bodies = [sample("bicycle" if i % 2 else "motorcycle", i % 5).read_bytes() for i in range(len(keys))]
    bucket, s3 = twin.outputs["IntakeBucketName"], s3_client(twin, 16)
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kb: s3.put_object(Bucket=bucket, Key=kb[0], Body=kb[1]), zip(keys, bodies)))
    records = wait_for(twin, set(keys), timeout=600)
    seconds = time.monotonic() - started
    print(f"1000 uploads recorded in {seconds:.1f} s ({1000 / seconds:.1f} uploads/s)")
    assert len(records) == 1000
    assert {r["outcome"] for r in records.values()} <= {"classified", "needs_review"}
    under_prefix = [r for r in twin.results() if r["key"].startswith("thousand/")]
    assert len(under_prefix) == 1000  # exactly one each
