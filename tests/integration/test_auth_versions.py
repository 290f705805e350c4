"""Signature versions: SigV2 (what boto3 before 1.36 presigns with by default) is refused with
a message that names the fix; SigV4 presigned URLs from the same client work."""

import urllib.error
import urllib.request

import boto3
import botocore.config

import ternlib


def _presign(ternd, signature_version, bucket, key):
    cfg = botocore.config.Config(region_name=ternlib.REGION, s3={"addressing_style": "path"},
                                 signature_version=signature_version)
    client = boto3.session.Session().client("s3", endpoint_url=ternd.endpoint,
                                            aws_access_key_id=ternd.access_key,
                                            aws_secret_access_key=ternd.secret_key, config=cfg)
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                         ExpiresIn=300)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_sigv2_presigned_refused_by_name(ternd, s3, bucket):
    s3.put_object(Bucket=bucket, Key="doc", Body=b"payload")
    url = _presign(ternd, "s3", bucket, "doc")
    assert "AWSAccessKeyId=" in url and "Signature=" in url  # really a SigV2 URL
    status, body = _get(url)
    assert status == 400, body
    assert b"<Code>InvalidRequest</Code>" in body
    assert b"Signature Version 2" in body and b"s3v4" in body


def test_sigv2_header_refused_by_name(ternd, bucket):
    status, _, body = ternlib.http_request(
        ternd.hostport, "GET", f"/{bucket}",
        headers={"Authorization": "AWS " + ternd.access_key + ":c2lnbmF0dXJl",
                 "Date": "Sun, 22 Nov 2026 05:00:00 GMT"})
    assert status == 400, body
    assert b"Signature Version 2" in body


def test_sigv4_presigned_from_same_client_works(ternd, s3, bucket):
    s3.put_object(Bucket=bucket, Key="doc", Body=b"payload")
    status, body = _get(_presign(ternd, "s3v4", bucket, "doc"))
    assert status == 200 and body == b"payload"
