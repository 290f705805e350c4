"""Integrity end to end: bytes flipped on disk are detected, counted and never served; the
scrubber finds corruption by itself; blocks follow --block-size and are collected when
unreferenced."""

import glob
import os

import botocore.exceptions
import pytest

import ternlib

MIB = ternlib.MIB


def _metric(server, name):
    text, _ = ternlib.fetch_metrics(server.hostport)
    return ternlib.metric(ternlib.parse_metrics(text), name)


def _corrupt_blob_files(data_dir):
    """Flips bytes in the middle of every blob file; returns how many files were touched."""
    files = glob.glob(os.path.join(data_dir, "*.blob"))
    for path in files:
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            chunk = bytearray(f.read(64))
            for i in range(len(chunk)):
                chunk[i] ^= 0xFF
            f.seek(size // 2)
            f.write(bytes(chunk))
    return len(files)


def test_corrupt_block_is_never_served(ternd_factory):
    server = ternd_factory(sync=True, extra_args=["--scrub-rate", "0"])
    s3 = server.client()
    s3.create_bucket(Bucket="integrity")
    data = ternlib.random_bytes(512 * 1024, seed=7)  # one block
    s3.put_object(Bucket="integrity", Key="victim", Body=data)
    server.restart()  # a clean stop flushes the block into a blob file
    assert _corrupt_blob_files(server.data_dir) >= 1
    server.restart()
    s3 = server.client()
    before = _metric(server, "tern_store_corruptions_total") or 0
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="integrity", Key="victim")["Body"].read()
    assert ternlib.http_status(e.value) == 500
    assert ternlib.error_code(e.value) == "InternalError"
    assert _metric(server, "tern_store_corruptions_total") >= before + 1
    # Still refused on a second read (quarantined), and the node keeps serving other keys.
    with pytest.raises(botocore.exceptions.ClientError):
        s3.get_object(Bucket="integrity", Key="victim")["Body"].read()
    s3.put_object(Bucket="integrity", Key="fine", Body=b"ok")
    assert s3.get_object(Bucket="integrity", Key="fine")["Body"].read() == b"ok"


def test_scrubber_finds_corruption_by_itself(ternd_factory):
    server = ternd_factory(sync=True, extra_args=["--scrub-rate", "0"])
    s3 = server.client()
    s3.create_bucket(Bucket="scrub")
    for i in range(3):
        s3.put_object(Bucket="scrub", Key=f"k{i}", Body=ternlib.random_bytes(300 * 1024, seed=i))
    server.restart()
    assert _corrupt_blob_files(server.data_dir) >= 1
    server.extra_args = ["--scrub-rate", "64M"]
    server.restart()
    # No client read: only the scrubber can find it. Await the counter, bounded.
    ternlib.wait_until(lambda: (_metric(server, "tern_store_corruptions_total") or 0) >= 1,
                       timeout_s=30, interval_s=0.2, what="the scrubber to report corruption")
    assert "corrupt" in server.log_text().lower()


def test_blocks_follow_block_size_and_are_collected(ternd_factory):
    server = ternd_factory(sync=False, extra_args=["--block-size", "256K", "--scrub-rate", "0"])
    s3 = server.client()
    s3.create_bucket(Bucket="split")
    data = ternlib.random_bytes(MIB + 1, seed=11)
    s3.put_object(Bucket="split", Key="a", Body=data)
    assert _metric(server, "tern_store_blocks") == 5  # 4 x 256 KiB + 1 byte
    assert _metric(server, "tern_store_block_bytes") == MIB + 1
    # Ranged reads across the 256 KiB block boundaries.
    got = s3.get_object(Bucket="split", Key="a", Range="bytes=262140-524300")["Body"].read()
    assert got == data[262140:524301]
    s3.put_object(Bucket="split", Key="b", Body=data)  # same content: no new blocks
    assert _metric(server, "tern_store_blocks") == 5
    assert _metric(server, "tern_store_dedup_ratio") == pytest.approx(2.0)
    s3.delete_object(Bucket="split", Key="a")
    assert _metric(server, "tern_store_blocks") == 5  # still referenced by "b"
    s3.delete_object(Bucket="split", Key="b")
    assert _metric(server, "tern_store_blocks") == 0
    assert _metric(server, "tern_store_block_bytes") == 0
