"""s3://bucket/prefix URIs, as every command that reads or writes S3 takes them (stage-data, sagemaker)."""

from __future__ import annotations


class S3UriError(ValueError):
    """Not an s3://bucket/prefix URI; the message quotes it."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/prefix -> ("bucket", "some/prefix")."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise S3UriError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise S3UriError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)")
    return bucket, prefix.strip("/")


def s3_join(uri: str, *parts: str) -> str:
    """The URI under ``uri`` named by ``parts``: s3_join("s3://b/p", "x/", "y") == "s3://b/p/x/y"."""
    bucket, prefix = parse_s3_uri(uri)
    keys = [p.strip("/") for p in (prefix, *parts) if p and p.strip("/")]
    return f"s3://{bucket}/" + "/".join(keys)
