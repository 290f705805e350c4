"""Malformed, hostile and unusual requests over raw sockets: each gets the right error and
changes nothing; HTTP/1.1 features (chunked bodies, 100-continue, keep-alive, pipelining,
aws-chunked signed streaming) work."""

import socket

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

import ternlib
from ternlib import MIB, RawConn, build_request, content_md5, object_path, sha256_hex


def test_signer_matches_botocore():
    """Our SigV4 helper produces botocore's signature (so failures below are the server's)."""
    creds = botocore.credentials.Credentials("AKEXAMPLE", "secretsecret")
    body = b"hello world"
    req = botocore.awsrequest.AWSRequest(
        method="PUT", url="http://127.0.0.1:9999/bkt/some%20key/x",
        params={"partNumber": "1", "uploadId": "a+b/c"}, data=body,
        headers={"Content-Type": "text/plain"})
    botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    ours = ternlib.sign_headers("PUT", "127.0.0.1:9999", "/bkt/some%20key/x",
                                [("partNumber", "1"), ("uploadId", "a+b/c")],
                                {"Content-Type": "text/plain"}, sha256_hex(body), "AKEXAMPLE",
                                "secretsecret", amz_date=req.headers["X-Amz-Date"])
    assert ours["Authorization"] == req.headers["Authorization"]


def get_body(s3, bucket, key):
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def assert_server_alive(ternd):
    status, _, body = ternlib.http_request(ternd.hostport, "GET", "/readyz")
    assert status == 200, body


# ---------------------------------------------------------------- HTTP framing

@pytest.mark.parametrize("line", [b"BLAH\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/1.1 extra\r\n\r\n",
                                  b"GET / HTTP/7.3\r\n\r\n", b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"],
                         ids=["word", "method-only", "extra-token", "bad-version", "binary"])
def test_malformed_request_line(ternd, line):
    with RawConn(ternd.hostport, 5) as c:
        c.send(line)
        r = c.read_response()
        assert r.status == 400, r
        assert c.closed_by_peer(5), "connection should be closed after a framing error"
    assert_server_alive(ternd)


def test_header_section_too_large(ternd, signer, s3, bucket):
    path = object_path(bucket, "hdr")
    req = signer.raw("PUT", path, headers={"X-Pad": "p" * (17 * 1024)}, body=b"data")
    with RawConn(ternd.hostport, 5) as c:
        try:
            c.send(req)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before reading everything
        r = c.read_response()
        assert r.status in (400, 431), r
        if r.body:
            assert r.s3_code == "RequestHeaderSectionTooLarge", r
        assert c.closed_by_peer(5)
    assert get_body(s3, bucket, "hdr") is None
    # Many headers just under the limit are fine.
    headers = {f"X-Filler-{i}": "f" * 100 for i in range(100)}  # ~11.6 KiB
    r = signer.request("PUT", path, headers=headers, body=b"ok")
    assert r.status == 200, r
    assert get_body(s3, bucket, "hdr") == b"ok"


def test_short_body_then_close(ternd, signer, s3, bucket):
    s3.put_object(Bucket=bucket, Key="old", Body=b"old content")
    for key in ("new", "old"):
        body = ternlib.random_bytes(300 * 1024)
        req = signer.raw("PUT", object_path(bucket, key), body=body)
        with RawConn(ternd.hostport, 5) as c:
            c.send(req[:len(req) - 100 * 1024])  # headers and 200 KiB of the 300 KiB
            c.sock.shutdown(socket.SHUT_WR)
            try:
                r = c.read_response()
                assert r.status == 400 and r.s3_code == "IncompleteBody", r
            except (EOFError, socket.timeout):
                pass  # closing without an answer is fine too
    # The store never shows a partial object: sample a few times (the server may still be
    # handling the close), then check with a request on a new connection.
    for _ in range(20):
        assert get_body(s3, bucket, "new") is None
        assert get_body(s3, bucket, "old") == b"old content"
    # Same with an abrupt close (RST).
    req = signer.raw("PUT", object_path(bucket, "rst"), body=b"x" * 100000)
    c = RawConn(ternd.hostport, 5)
    c.send(req[:-50000])
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    for _ in range(20):
        assert get_body(s3, bucket, "rst") is None
    assert_server_alive(ternd)


def test_body_longer_than_content_length(ternd, signer, s3, bucket):
    """Extra bytes after the body are the next request on the connection: not HTTP -> 400,
    and the object holds exactly Content-Length bytes (never the longer body)."""
    body = b"0123456789"
    extra = b"garbage that is not http\r\n\r\n"
    req = signer.raw("PUT", object_path(bucket, "more"), body=body,
                     payload_hash="UNSIGNED-PAYLOAD")
    statuses = []
    with RawConn(ternd.hostport, 5) as c:
        c.send(req + extra)
        for _ in range(2):
            try:
                statuses.append(c.read_response().status)
            except (EOFError, socket.timeout):
                break
    assert 400 in statuses, statuses
    assert get_body(s3, bucket, "more") in (None, body)
    # Signed payload hash over the longer body: the declared length wins and the hash fails.
    long_body = body + b"EXTRA"
    h = signer.headers("PUT", object_path(bucket, "more2"), body=long_body)
    h["Content-Length"] = str(len(body))
    with RawConn(ternd.hostport, 5) as c:
        c.send(build_request("PUT", object_path(bucket, "more2"), "", h, long_body))
        r = c.read_response()
        assert r.status == 400, r
    assert get_body(s3, bucket, "more2") is None


def test_missing_content_length(ternd, signer, s3, bucket):
    h = signer.headers("PUT", object_path(bucket, "nolen"), body=b"", content_length=False)
    with RawConn(ternd.hostport, 5) as c:
        c.send(build_request("PUT", object_path(bucket, "nolen"), "", h))
        r = c.read_response()
    assert r.status == 411 and r.s3_code == "MissingContentLength", r
    assert get_body(s3, bucket, "nolen") is None


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("name", ["ab", "a" * 64, "UpperCase", "under_score", "-dash-start",
                                  "dash-end-", "192.168.1.1", "two..dots", "has space",
                                  "xn--punycode", "bucket-s3alias", ".dot-start"])
def test_invalid_bucket_names(ternd, signer, s3, name):
    r = signer.request("PUT", "/" + ternlib.uri_encode(name))
    assert r.status == 400 and r.s3_code == "InvalidBucketName", (name, r)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_key_too_long(signer, s3, bucket):
    r = signer.request("PUT", object_path(bucket, "k" * 1025), body=b"x")
    assert r.status == 400 and r.s3_code == "KeyTooLongError", r
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    multibyte = "é" * 513  # 1026 bytes, 513 characters
    r = signer.request("PUT", object_path(bucket, multibyte), body=b"x")
    assert r.status == 400 and r.s3_code == "KeyTooLongError", r
    r = signer.request("PUT", object_path(bucket, "k" * 1024), body=b"x")
    assert r.status == 200, r
    assert get_body(s3, bucket, "k" * 1024) == b"x"


# ---------------------------------------------------------------- XML bodies

BAD_XML = [
    b"this is not xml",
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&lol2;</ETag></Part>"
    b"</CompleteMultipartUpload>",
    b"",
    b"<A>" * 40 + b"</A>" * 40,
]


def test_complete_multipart_malformed_xml(signer, s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mx")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mx", UploadId=uid, PartNumber=1, Body=b"p")["ETag"]
    for body in BAD_XML:
        r = signer.request("POST", object_path(bucket, "mx"), params=[("uploadId", uid)],
                           body=body)
        assert r.status == 400 and r.s3_code == "MalformedXML", (body[:40], r)
    assert get_body(s3, bucket, "mx") is None
    # The upload is intact and still completes.
    s3.complete_multipart_upload(Bucket=bucket, Key="mx", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert get_body(s3, bucket, "mx") == b"p"


def test_delete_objects_malformed_xml(signer, s3, bucket):
    s3.put_object(Bucket=bucket, Key="survivor", Body=b"s")
    bodies = BAD_XML + [b"<Delete><Object><Key>survivor</Key></Object>"]
    for body in bodies:
        r = signer.request("POST", object_path(bucket), params=[("delete", "")], body=body,
                           headers={"Content-MD5": content_md5(body)})
        assert r.status == 400 and r.s3_code == "MalformedXML", (body[:40], r)
    assert get_body(s3, bucket, "survivor") == b"s"


# ---------------------------------------------------------------- integrity and auth

def test_content_sha256_mismatch(signer, s3, bucket):
    s3.put_object(Bucket=bucket, Key="shaold", Body=b"old")
    for key in ("shanew", "shaold"):
        r = signer.request("PUT", object_path(bucket, key), body=b"actual body",
                           payload_hash=sha256_hex(b"declared body"))
        assert r.status == 400 and r.s3_code == "XAmzContentSHA256Mismatch", r
    assert get_body(s3, bucket, "shanew") is None
    assert get_body(s3, bucket, "shaold") == b"old"
    # Large body (several blocks): the mismatch is only known at the end; still nothing stored.
    big = ternlib.random_bytes(3 * MIB)
    r = signer.request("PUT", object_path(bucket, "shabig"), body=big,
                       payload_hash=sha256_hex(big[:-1] + b"\x00"))
    assert r.status == 400 and r.s3_code == "XAmzContentSHA256Mismatch", r
    assert get_body(s3, bucket, "shabig") is None


def test_content_md5_mismatch(signer, s3, bucket):
    s3.put_object(Bucket=bucket, Key="md5old", Body=b"old")
    for key in ("md5new", "md5old"):
        r = signer.request("PUT", object_path(bucket, key), body=b"body",
                           headers={"Content-MD5": content_md5(b"other")})
        assert r.status == 400 and r.s3_code == "BadDigest", r
    assert get_body(s3, bucket, "md5new") is None
    assert get_body(s3, bucket, "md5old") == b"old"
    r = signer.request("PUT", object_path(bucket, "md5ok"), body=b"body",
                       headers={"Content-MD5": content_md5(b"body")})
    assert r.status == 200, r


@pytest.mark.parametrize("offset_s", [-20 * 60, 20 * 60], ids=["past", "future"])
def test_request_time_too_skewed(signer, s3, bucket, offset_s):
    r = signer.request("PUT", object_path(bucket, "skew"), body=b"x",
                       amz_date=ternlib.amz_now(offset_s))
    assert r.status == 403 and r.s3_code == "RequestTimeTooSkewed", r
    assert get_body(s3, bucket, "skew") is None
    # Five minutes off is within the allowed skew.
    r = signer.request("PUT", object_path(bucket, "skew"), body=b"x",
                       amz_date=ternlib.amz_now(offset_s // 4))
    assert r.status == 200, r


def test_missing_auth(ternd, s3, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"p")
    cases = [("GET", f"/{bucket}/private", b""), ("PUT", f"/{bucket}/anon", b"anon"),
             ("GET", "/", b""), ("GET", f"/{bucket}", b""), ("DELETE", f"/{bucket}/private", b""),
             ("PUT", "/anon-bucket-x", b""), ("GET", "/_tern/status", b"")]
    for method, target, body in cases:
        status, _, rbody = ternlib.http_request(ternd.hostport, method, target, body=body)
        assert status == 403 and ternlib.s3_error_code(rbody) == "AccessDenied", \
            (method, target, status, rbody)
    assert get_body(s3, bucket, "private") == b"p"
    assert get_body(s3, bucket, "anon") is None
    assert "anon-bucket-x" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# ---------------------------------------------------------------- HTTP/1.1 features

def test_transfer_encoding_chunked_put(ternd, signer, s3, bucket):
    data = ternlib.random_bytes(1536 * 1024 + 7)
    h = signer.headers("PUT", object_path(bucket, "te"), body=data,
                       headers={"Transfer-Encoding": "chunked"})
    pieces = [data[:1000], data[1000:700000], data[700000:]]
    wire = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
    with RawConn(ternd.hostport, 30) as c:
        c.send(build_request("PUT", object_path(bucket, "te"), "", h) + wire)
        r = c.read_response()
    assert r.status == 200, r
    assert r.header("ETag") == f'"{ternlib.md5_hex(data)}"'
    assert get_body(s3, bucket, "te") == data


def test_expect_100_continue(ternd, signer, s3, bucket):
    data = ternlib.random_bytes(256 * 1024)
    h = signer.headers("PUT", object_path(bucket, "cont"), body=data,
                       headers={"Expect": "100-continue"})
    with RawConn(ternd.hostport, 10) as c:
        c.send(build_request("PUT", object_path(bucket, "cont"), "", h))
        interim = c.read_response()  # must arrive before any body byte is sent
        assert interim.status == 100, interim
        c.send(data)
        r = c.read_response()
        assert r.status == 200, r
    assert get_body(s3, bucket, "cont") == data
    # A refused request answers the final status instead of 100 (no body needed).
    h = signer.headers("PUT", object_path("no-such-bucket-zz", "cont"), body=data,
                       headers={"Expect": "100-continue"})
    with RawConn(ternd.hostport, 10) as c:
        c.send(build_request("PUT", object_path("no-such-bucket-zz", "cont"), "", h))
        r = c.read_response()
        assert r.status == 404 and r.s3_code == "NoSuchBucket", r


def test_expect_100_continue_empty_and_sent_bodies(ternd, signer, s3, bucket):
    """A request that asked for 100-continue gets it before its final answer even when its
    body is empty or already sent with the headers: botocore, handed the final answer while
    waiting for the 100, keeps its status for the connection's next such request and answers
    that one with it if the server dies first (a PUT seen as acknowledged that never
    arrived)."""
    for data in (b"", b"sent with the headers"):
        key = f"cont-{len(data)}"
        h = signer.headers("PUT", object_path(bucket, key), body=data,
                           headers={"Expect": "100-continue"})
        with RawConn(ternd.hostport, 10) as c:
            c.send(build_request("PUT", object_path(bucket, key), "", h, data))
            interim = c.read_response()
            assert interim.status == 100, interim
            r = c.read_response()
            assert r.status == 200, r
        assert get_body(s3, bucket, key) == data


def test_keep_alive_many_requests(ternd, signer, bucket):
    path = object_path(bucket, "ka")
    with RawConn(ternd.hostport, 10) as c:
        for i in range(3):
            body = f"version {i}".encode()
            c.send(signer.raw("PUT", path, body=body))
            r = c.read_response("PUT")
            assert r.status == 200, r
            c.send(signer.raw("GET", path))
            r = c.read_response("GET")
            assert r.status == 200 and r.body == body, r
            c.send(signer.raw("HEAD", path))
            r = c.read_response("HEAD")
            assert r.status == 200 and r.header("Content-Length") == str(len(body)), r
        c.send(signer.raw("GET", object_path(bucket, "absent")))
        r = c.read_response("GET")
        assert r.status == 404 and r.s3_code == "NoSuchKey", r
        c.send(signer.raw("DELETE", path))
        assert c.read_response("DELETE").status == 204
        c.send(signer.raw("GET", path))
        assert c.read_response("GET").status == 404


def test_pipelined_requests(ternd, signer, s3, bucket):
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"pipe{i}", Body=f"body{i}".encode() * 1000)
    wire = b"".join(signer.raw("GET", object_path(bucket, f"pipe{i}")) for i in range(3))
    with RawConn(ternd.hostport, 10) as c:
        c.send(wire)
        for i in range(3):
            r = c.read_response()
            assert r.status == 200 and r.body == f"body{i}".encode() * 1000, r


def test_connection_close_honoured(ternd, signer, bucket):
    with RawConn(ternd.hostport, 10) as c:
        c.send(signer.raw("GET", object_path(bucket), headers={"Connection": "close"}))
        r = c.read_response()
        assert r.status == 200, r
        assert c.closed_by_peer(5)


def _aws_chunked_put(ternd, signer, bucket, key, data, **corrupt):
    path = object_path(bucket, key)
    amz_date = ternlib.amz_now()
    chunk = 64 * 1024
    n_chunks = (len(data) + chunk - 1) // chunk
    # Length of the encoded body: per chunk "hex;chunk-signature=<64>\r\n" data "\r\n".
    encoded_len = sum(len(f"{min(chunk, len(data) - i * chunk):x}") + 17 + 64 + 4 +
                      min(chunk, len(data) - i * chunk) for i in range(n_chunks)) + 1 + 17 + 64 + 4
    h = signer.headers("PUT", path, headers={"Content-Encoding": "aws-chunked",
                                             "x-amz-decoded-content-length": str(len(data)),
                                             "Content-Length": str(encoded_len)},
                       payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD", amz_date=amz_date)
    body = ternlib.aws_chunked_body(data, chunk, h["_seed_signature"], h["_signing_key"],
                                    amz_date, h["_scope"], **corrupt)
    assert len(body) == encoded_len
    with RawConn(ternd.hostport, 30) as c:
        c.send(build_request("PUT", path, "", h, body))
        return c.read_response()


def test_aws_chunked_signed_streaming(ternd, signer, s3, bucket):
    data = ternlib.random_bytes(200 * 1024 + 11)
    r = _aws_chunked_put(ternd, signer, bucket, "stream", data)
    assert r.status == 200, r
    assert r.header("ETag") == f'"{ternlib.md5_hex(data)}"'
    assert get_body(s3, bucket, "stream") == data
    head = s3.head_object(Bucket=bucket, Key="stream")
    assert head["ContentLength"] == len(data)
    assert head.get("ContentEncoding") in (None, "")  # aws-chunked is not stored


@pytest.mark.parametrize("corrupt", [{"corrupt_chunk": 1}, {"corrupt_chunk": 3},
                                     {"corrupt_data_chunk": 2}],
                         ids=["sig-middle", "sig-final", "data"])
def test_aws_chunked_corrupted(ternd, signer, s3, bucket, corrupt):
    s3.put_object(Bucket=bucket, Key="stream-old", Body=b"old")
    data = ternlib.random_bytes(3 * 64 * 1024 - 5)  # 3 data chunks + the final empty one
    for key in ("stream-bad", "stream-old"):
        r = _aws_chunked_put(ternd, signer, bucket, key, data, **corrupt)
        assert r.status == 403 and r.s3_code == "SignatureDoesNotMatch", r
    assert get_body(s3, bucket, "stream-bad") is None
    assert get_body(s3, bucket, "stream-old") == b"old"


def test_server_survives_everything(ternd, s3):
    """After all the abuse above the server still serves and lists."""
    assert_server_alive(ternd)
    assert s3.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
