"""Real command-line S3 clients from Debian (s3cmd, aws cli v2) against one ternd."""

import hashlib
import json
import os
import subprocess

import pytest

import ternlib
from ternlib import MIB

CLI_TIMEOUT_S = 120


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for _ in range(1 << 20):
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def write_random(path, size, seed):
    data = ternlib.random_bytes(size, seed=seed)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def run(argv, env, cwd=None):
    p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"{argv} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p.stdout


def run_fail(argv, env):
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                       stdin=subprocess.DEVNULL)
    assert p.returncode != 0, f"{argv} unexpectedly succeeded: {p.stdout}"
    return p.stdout + p.stderr


# ---------------------------------------------------------------- s3cmd

@pytest.fixture
def s3cmd(ternd, tmp_path):
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {ternd.access_key}\n"
        f"secret_key = {ternd.secret_key}\n"
        f"host_base = {ternd.hostport}\n"
        f"host_bucket = {ternd.hostport}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        "bucket_location = us-east-1\n"
        "check_ssl_certificate = False\n"
        "multipart_chunk_size_mb = 5\n"
        "progress_meter = False\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3CMD"))}
    env["HOME"] = str(tmp_path)
    binary = ternlib.which_debian("s3cmd")

    def s3cmd_run(*args, fail=False):
        argv = [binary, "-c", str(cfg), "--no-progress"] + list(args)
        return run_fail(argv, env) if fail else run(argv, env)
    return s3cmd_run


def test_s3cmd_roundtrip(s3cmd, s3, tmp_path):
    bucket = ternlib.unique_name("s3cmd")
    s3cmd("mb", f"s3://{bucket}")
    assert bucket in s3cmd("ls")

    small = tmp_path / "small.bin"
    big = tmp_path / "big.bin"  # above multipart_chunk_size_mb: s3cmd uploads it in parts
    small_sha = write_random(small, 100 * 1024 + 3, seed=1)
    big_sha = write_random(big, 12 * MIB + 5, seed=2)
    s3cmd("put", str(small), f"s3://{bucket}/dir/small.bin")
    s3cmd("put", str(big), f"s3://{bucket}/big.bin")

    listing = s3cmd("ls", "-r", f"s3://{bucket}")
    assert f"s3://{bucket}/dir/small.bin" in listing and f"s3://{bucket}/big.bin" in listing
    top = s3cmd("ls", f"s3://{bucket}")
    assert "DIR" in top and f"s3://{bucket}/dir/" in top

    out_small = tmp_path / "small.out"
    out_big = tmp_path / "big.out"
    s3cmd("get", f"s3://{bucket}/dir/small.bin", str(out_small))
    s3cmd("get", f"s3://{bucket}/big.bin", str(out_big))
    assert file_sha256(out_small) == small_sha
    assert file_sha256(out_big) == big_sha
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == 12 * MIB + 5
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB parts

    s3cmd("del", f"s3://{bucket}/dir/small.bin")
    s3cmd("del", f"s3://{bucket}/big.bin")
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    s3cmd("rb", f"s3://{bucket}")
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# ---------------------------------------------------------------- aws cli

@pytest.fixture
def aws(ternd, tmp_path):
    empty = tmp_path / "aws-empty-config"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": ternd.access_key,
        "AWS_SECRET_ACCESS_KEY": ternd.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
        "HOME": str(tmp_path),
    })
    binary = ternlib.which_debian("aws")

    def aws_run(*args, fail=False):
        argv = [binary, "--endpoint-url", ternd.endpoint] + list(args)
        return run_fail(argv, env) if fail else run(argv, env)
    return aws_run


def test_aws_cli_s3_commands(aws, s3, tmp_path):
    bucket = ternlib.unique_name("awscli")
    aws("s3", "mb", f"s3://{bucket}")
    assert bucket in aws("s3", "ls")

    small = tmp_path / "small.txt"
    small_sha = write_random(small, 4096, seed=3)
    big = tmp_path / "big.bin"  # 20 MiB: the aws cli uploads it as 8 + 8 + 4 MiB parts
    big_sha = write_random(big, 20 * MIB, seed=4)
    aws("s3", "cp", str(small), f"s3://{bucket}/a/small.txt")
    aws("s3", "cp", str(big), f"s3://{bucket}/big.bin")

    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == 20 * MIB
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]

    listing = aws("s3", "ls", f"s3://{bucket}/")
    assert "PRE a/" in listing and "big.bin" in listing
    assert "small.txt" in aws("s3", "ls", "--recursive", f"s3://{bucket}")

    aws("s3", "cp", f"s3://{bucket}/big.bin", str(tmp_path / "big.out"))
    aws("s3", "cp", f"s3://{bucket}/a/small.txt", str(tmp_path / "small.out"))
    assert file_sha256(tmp_path / "big.out") == big_sha
    assert file_sha256(tmp_path / "small.out") == small_sha

    aws("s3", "rb", f"s3://{bucket}", fail=True)  # not empty
    aws("s3", "rm", f"s3://{bucket}/big.bin")
    aws("s3", "rm", "--recursive", f"s3://{bucket}/a/")
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    aws("s3", "rb", f"s3://{bucket}")
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_aws_cli_s3api(aws, s3, bucket, tmp_path):
    body = tmp_path / "body.bin"
    sha = write_random(body, 300 * 1024, seed=5)
    out = json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "api/obj",
                         "--body", str(body), "--content-type", "application/x-tern",
                         "--metadata", "team=storage"))
    md5 = hashlib.md5(body.read_bytes()).hexdigest()
    assert out["ETag"] == f'"{md5}"'
    got = json.loads(aws("s3api", "get-object", "--bucket", bucket, "--key", "api/obj",
                         str(tmp_path / "got.bin")))
    assert got["ContentLength"] == 300 * 1024
    assert got["ContentType"] == "application/x-tern"
    assert got["Metadata"] == {"team": "storage"}
    assert file_sha256(tmp_path / "got.bin") == sha
    ranged = json.loads(aws("s3api", "get-object", "--bucket", bucket, "--key", "api/obj",
                            "--range", "bytes=100-199", str(tmp_path / "part.bin")))
    assert ranged["ContentRange"] == f"bytes 100-199/{300 * 1024}"
    assert (tmp_path / "part.bin").read_bytes() == body.read_bytes()[100:200]
    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket))
    assert [o["Key"] for o in listed["Contents"]] == ["api/obj"]
    err = aws("s3api", "get-object", "--bucket", bucket, "--key", "missing",
              str(tmp_path / "x"), fail=True)
    assert "NoSuchKey" in err
