"""A full disk: uploads are refused with 507 before RocksDB runs out of space; nothing
acknowledged is lost, deletes free space, and the node restarts on the same disk.

The data dir is a tmpfs of a fixed size that the test mounts under its own temporary
directory and unmounts at the end. Needs root (CI and the dev machines run as root);
skipped with the reason otherwise.
"""

import os
import subprocess

import botocore.exceptions
import pytest

import ternlib

TMPFS_MIB = 384
OBJECT_BYTES = 2 * ternlib.MIB


def _can_mount_tmpfs(path):
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", path], check=True,
                       capture_output=True, timeout=10)
        subprocess.run(["umount", path], check=True, capture_output=True, timeout=10)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or not _can_mount_tmpfs(str(mnt)):
        pytest.skip("needs root and tmpfs mounts to make a small disk")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MIB}m", "tmpfs", str(mnt)],
                   check=True, timeout=10)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], timeout=10)


def _fill(s3, bucket, limit):
    """PUTs 2 MiB objects until refused; returns the acknowledged ones and the refusal."""
    acked = {}
    for i in range(limit):
        data = ternlib.random_bytes(OBJECT_BYTES, seed=i)
        try:
            s3.put_object(Bucket=bucket, Key=f"o{i:04d}", Body=data)
        except botocore.exceptions.ClientError as e:
            return acked, e
        acked[f"o{i:04d}"] = ternlib.sha256_hex(data)
    return acked, None


def test_full_disk_refuses_uploads_keeps_data_and_restarts(small_disk, tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    server = ternlib.Ternd(str(small_disk / "data"), str(log_dir), sync=True,
                           extra_args=["--scrub-rate", "0"])
    server.start()
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="full")
        # 384 MiB of disk, 256 MiB reserved by default: the refusal must come well before 192 puts.
        acked, refusal = _fill(s3, "full", limit=192)
        assert refusal is not None, "the disk never filled up"
        assert ternlib.error_code(refusal) == "InsufficientStorage"
        assert ternlib.http_status(refusal) == 507
        assert len(acked) > 0

        # Every acknowledged object reads back intact; the refused one is not visible.
        for key, digest in acked.items():
            assert ternlib.sha256_hex(s3.get_object(Bucket="full", Key=key)["Body"].read()) == digest
        refused_key = f"o{len(acked):04d}"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.head_object(Bucket="full", Key=refused_key)
        assert ternlib.http_status(e.value) == 404

        # Deletes still work on the full disk (they are how an operator frees space).
        doomed = sorted(acked)[: len(acked) // 2]
        for key in doomed:
            s3.delete_object(Bucket="full", Key=key)
            del acked[key]

        # RocksDB never saw a full disk: no "No space left" in the log.
        assert "No space left" not in server.log_text()

        # A restart on the same disk works and serves everything that is left.
        server.restart()
        s3 = server.client()
        for key, digest in acked.items():
            assert ternlib.sha256_hex(s3.get_object(Bucket="full", Key=key)["Body"].read()) == digest
        listed = {o["Key"] for o in s3.list_objects_v2(Bucket="full").get("Contents", [])}
        assert listed == set(acked)
    finally:
        rc = server.stop()
        assert rc == 0, server.log_tail()
