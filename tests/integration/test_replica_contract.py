"""The replica-client contract, run against every backend: a local folder and a real
S3 endpoint (rclone serve s3 on loopback). Both must behave the same, or the seam is
lying (STYLE 3); backups written through one are restored through the same code."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from safehold.backup.replica_client import ObjectInfo, ObjectMissing, ReplicaClient, ReplicaError, open_replica
from tests.support.s3 import S3Server
from tests.support.server import free_port

BACKENDS = ["folder", "s3"]

OpenReplica = Callable[[str], ReplicaClient]


@pytest.fixture(params=BACKENDS)
def open_named(request: pytest.FixtureRequest, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> OpenReplica:
    """Opens replicas by a short name; every name of one test lives under one fresh
    root, so names that share a string prefix ("seg", "segments") are siblings."""
    run = uuid.uuid4().hex[:12]
    if request.param == "folder":
        def url_for(name: str) -> str:
            return (tmp_path / "replicas" / name).as_uri()
    else:
        server: S3Server = request.getfixturevalue("s3")
        # Only the server's credentials: a developer's own AWS settings must not leak in.
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(key)
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)

        def url_for(name: str) -> str:
            return server.url(f"{run}/{name}")
    return lambda name: open_replica(url_for(name))


@pytest.fixture
def replica(open_named: OpenReplica) -> ReplicaClient:
    return open_named("main")


def _listing(replica: ReplicaClient, prefix: str) -> dict[str, int]:
    infos = list(replica.list(prefix))
    assert all(isinstance(i, ObjectInfo) for i in infos)
    listing = {i.path: i.size for i in infos}
    assert len(listing) == len(infos), f"duplicate names in listing {infos}"
    return listing


PAYLOADS = {
    "empty": b"",
    "one-byte": b"\x00",
    "all-byte-values": bytes(range(256)) * 3,
    "5MiB-random": random.Random(20240601).randbytes(5 * 1024 * 1024),
}


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_get_returns_exactly_the_bytes_put(replica: ReplicaClient, name: str) -> None:
    data = PAYLOADS[name]
    assert replica.put_once(f"blobs/{name}", data) is True
    assert replica.get(f"blobs/{name}") == data
    assert _listing(replica, "blobs") == {f"blobs/{name}": len(data)}


def test_put_once_writes_once_and_never_overwrites(replica: ReplicaClient) -> None:
    assert replica.put_once("segments/0001", b"first") is True
    assert replica.put_once("segments/0001", b"second") is False
    assert replica.put_once("segments/0001", b"") is False
    assert replica.get("segments/0001") == b"first"
    assert _listing(replica, "segments") == {"segments/0001": 5}


def test_put_overwrites(replica: ReplicaClient) -> None:
    replica.put("manifest", b"version 1, the longer one")
    replica.put("manifest", b"version 2")
    assert replica.get("manifest") == b"version 2"
    assert _listing(replica, "") == {"manifest": 9}
    # put over an object that put_once wrote is allowed too: only put_once refuses.
    assert replica.put_once("snapshot", b"a") is True
    replica.put("snapshot", b"b")
    assert replica.get("snapshot") == b"b"


def test_get_of_a_missing_object_raises_object_missing(replica: ReplicaClient) -> None:
    with pytest.raises(ObjectMissing):
        replica.get("segments/never-written")
    replica.put("segments/0001", b"x")
    with pytest.raises(ObjectMissing):
        replica.get("segments/0002")
    with pytest.raises(ObjectMissing):
        replica.get("segments")  # a "directory" is not an object


def test_exists(replica: ReplicaClient) -> None:
    assert replica.exists("a/b") is False
    replica.put("a/b", b"")
    assert replica.exists("a/b") is True
    assert replica.exists("a") is False
    assert replica.exists("a/bc") is False


def test_a_name_below_an_object_is_missing(replica: ReplicaClient) -> None:
    # On a folder "a/b" is a file, so "a/b/c" fails with ENOTDIR; on S3 it is just
    # another key that is not there. Both must read as "missing", not as an outage.
    replica.put("a/b", b"x")
    assert replica.exists("a/b/c") is False
    with pytest.raises(ObjectMissing):
        replica.get("a/b/c")
    assert _listing(replica, "a/b/c") == {}


def test_list_returns_exactly_the_objects_under_a_prefix(replica: ReplicaClient) -> None:
    replica.put("seg/1", b"1")
    replica.put("seg/22", b"22")
    replica.put("segments/333", b"333")
    replica.put("segments/deeper/4444", b"4444")
    replica.put("seg.txt", b"55555")
    replica.put("other", b"666666")
    assert _listing(replica, "seg") == {"seg/1": 1, "seg/22": 2}
    assert _listing(replica, "seg/") == {"seg/1": 1, "seg/22": 2}
    assert _listing(replica, "segments") == {"segments/333": 3, "segments/deeper/4444": 4}
    assert _listing(replica, "segments/deeper") == {"segments/deeper/4444": 4}
    assert _listing(replica, "nothing-here") == {}
    assert _listing(replica, "") == {"seg/1": 1, "seg/22": 2, "segments/333": 3,
                                     "segments/deeper/4444": 4, "seg.txt": 5, "other": 6}


def test_list_after_returns_only_names_sorting_after(replica: ReplicaClient) -> None:
    """The shipper asks "any segment beyond the manifest?" in one cheap request."""
    for name in ("segments/001-003.seg", "segments/004-009.seg", "segments/010-010.seg",
                 "snapshots/004.snap"):
        replica.put(name, b"x")
    got = {o.path for o in replica.list("segments/", after="segments/004-999.seg")}
    assert got == {"segments/010-010.seg"}
    assert {o.path for o in replica.list("segments/", after="segments/010-999.seg")} == set()
    assert {o.path for o in replica.list("segments/", after="segments/003-999.seg")} == {
        "segments/004-009.seg", "segments/010-010.seg"}


def test_replicas_with_sibling_prefixes_do_not_see_each_other(open_named: OpenReplica) -> None:
    seg, segments = open_named("seg"), open_named("segments")
    seg.put("a", b"1")
    segments.put("b", b"22")
    assert _listing(seg, "") == {"a": 1}
    assert _listing(segments, "") == {"b": 2}
    assert seg.exists("b") is False
    with pytest.raises(ObjectMissing):
        segments.get("a")


def test_delete(replica: ReplicaClient) -> None:
    replica.put("snapshots/1", b"one")
    replica.put("snapshots/2", b"two")
    replica.delete("snapshots/1")
    assert replica.exists("snapshots/1") is False
    with pytest.raises(ObjectMissing):
        replica.get("snapshots/1")
    assert _listing(replica, "snapshots") == {"snapshots/2": 3}
    # the name is free again for a write-once object
    assert replica.put_once("snapshots/1", b"again") is True
    assert replica.get("snapshots/1") == b"again"


def test_deleting_a_missing_object_is_a_no_op(replica: ReplicaClient) -> None:
    # S3 answers 204 for a key that is not there; retention that died half-way
    # deletes the same names again and must not fail on the ones already gone.
    replica.delete("never/written")
    replica.put("once", b"1")
    replica.delete("once")
    replica.delete("once")
    assert _listing(replica, "") == {}


def test_deleting_the_last_object_leaves_the_replica_usable(replica: ReplicaClient) -> None:
    replica.put("only/one", b"x")
    replica.delete("only/one")
    assert _listing(replica, "") == {}
    assert replica.put_once("only/one", b"y") is True
    assert _listing(replica, "") == {"only/one": 1}


def test_nested_names(replica: ReplicaClient) -> None:
    names = {"lineage/0a1b/segments/00000001.zst": b"s1",
             "lineage/0a1b/segments/00000002.zst": b"s22",
             "lineage/0a1b/snapshots/2024/06/01/full.zst": b"snap",
             "lineage/ffee/manifest.json": b"{}"}
    for name, data in names.items():
        assert replica.put_once(name, data) is True
    for name, data in names.items():
        assert replica.exists(name) is True
        assert replica.get(name) == data
    assert _listing(replica, "lineage/0a1b") == {n: len(d) for n, d in names.items() if "0a1b" in n}
    assert _listing(replica, "lineage/0a1b/snapshots/2024") == {
        "lineage/0a1b/snapshots/2024/06/01/full.zst": 4}
    assert _listing(replica, "lineage") == {n: len(d) for n, d in names.items()}


# -- an S3 endpoint that is not there --------------------------------------------------

# obstore's default retry policy, which the client uses today, retries a refused
# connection 10 times with jittered exponential backoff (100 ms doubling, capped at
# 15 s): typically 1-5 s, rarely ~15 s, at worst ~56 s. The bound is that worst case,
# so the test is never flaky; tighten it once the client sets its own retry_config.
UNREACHABLE_LIMIT_S = 30.0

OPERATIONS: dict[str, Callable[[ReplicaClient], object]] = {
    "put_once": lambda r: r.put_once("x", b"y"),
    "put": lambda r: r.put("x", b"y"),
    "get": lambda r: r.get("x"),
    "exists": lambda r: r.exists("x"),
    "list": lambda r: list(r.list("")),
    "delete": lambda r: r.delete("x"),
}


def _outcome(replica: ReplicaClient, operation: str) -> tuple[str, BaseException | None, float]:
    started = time.monotonic()
    try:
        result = OPERATIONS[operation](replica)
    except Exception as exc:  # noqa: BLE001 - the assertions below look at what it was
        return operation, exc, time.monotonic() - started
    return operation, AssertionError(f"returned {result!r}"), time.monotonic() - started


def test_an_unreachable_endpoint_raises_replica_error_promptly(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "nobody", "AWS_SECRET_ACCESS_KEY": "nothing",
                       "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}.items():
        monkeypatch.setenv(key, value)
    port = free_port()  # bound, then closed: nothing listens there
    replica = open_replica(f"s3://safehold/p?endpoint=http://127.0.0.1:{port}")
    # All at once: each waits out its own retries, so the test costs the slowest one.
    with ThreadPoolExecutor(len(OPERATIONS)) as pool:
        outcomes = list(pool.map(lambda op: _outcome(replica, op), OPERATIONS))
    wrong = [f"{op}: {type(exc).__name__}: {str(exc)[:200]}" for op, exc, _ in outcomes
             # A refused connection is not a missing object: restore must not
             # conclude the data is gone, nor put_once that the name is free.
             if not isinstance(exc, ReplicaError) or isinstance(exc, ObjectMissing)]
    slow = [f"{op} took {elapsed:.1f}s" for op, _, elapsed in outcomes if elapsed >= UNREACHABLE_LIMIT_S]
    assert not wrong and not slow, wrong + slow
