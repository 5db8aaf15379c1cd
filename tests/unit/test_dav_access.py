"""StoreDavBackend.allowed: which hrefs a user may touch (their own tree, the
namespaces above it). Pure: no store is consulted."""

from __future__ import annotations

from typing import Any, cast

import pytest

from safehold.core.model import Actor, Principal
from safehold.http.davbackend import StoreDavBackend
from safehold.store.repo import Store


def _backend() -> StoreDavBackend:
    return StoreDavBackend(cast(Store, cast(Any, None)), Principal(1, "bob", False, 0.0),
                           Actor(1), "lineage")


@pytest.mark.parametrize(("href", "allowed"), [
    ("/", True),
    ("/dav", False),
    ("/dav/", True),
    ("/dav/files", True),
    ("/dav/files/", True),
    ("/dav/principals/", True),
    ("/dav/other/", False),
    ("/dav/files/bob", True),
    ("/dav/files/bob/", True),
    ("/dav/files/bob/a/b.txt", True),
    ("/dav/files/alice/", False),
    ("/dav/files/bobby/", False),
    ("/dav/files/Bob/", False),
    ("/dav/other/bob/", False),
    ("/dav/principals/bob/", True),
    ("/files/bob/", False),
    # Empty segments do not count: the first two non-empty ones decide.
    ("/dav//files/bob/x", True),
    ("/dav/files//bob/x", True),
    ("/dav/files//alice", False),
    ("/dav//", True),
    ("/dav///files//", True),
    ("/dav//other", False),
])
def test_allowed(href: str, allowed: bool) -> None:
    assert _backend().allowed(href) is allowed
