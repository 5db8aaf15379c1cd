from __future__ import annotations

import pytest

from safehold.dav import ifheader
from safehold.dav.errors import DavError


def test_untagged_lists() -> None:
    lists = ifheader.parse('(<urn:uuid:a> ["e1"]) (Not <DAV:no-lock>)')
    assert len(lists) == 2
    assert lists[0].resource is None
    assert [(c.negated, c.kind, c.value) for c in lists[0].conditions] == [
        (False, "token", "urn:uuid:a"), (False, "etag", '"e1"')]
    assert lists[1].conditions[0].negated


def test_tagged_list_decodes_path() -> None:
    lists = ifheader.parse('<http://h/dav/files/a%20b> (<urn:uuid:x>)')
    assert lists[0].resource == "/dav/files/a b"


@pytest.mark.parametrize("bad", ["", "(", "()", "<urn:x>", "(<a>", "Not (<a>)", "garbage"])
def test_malformed(bad: str) -> None:
    with pytest.raises(DavError) as info:
        ifheader.parse(bad)
    assert info.value.status == 400


def test_evaluate() -> None:
    def state(path: str) -> tuple[str | None, set[str]]:
        return '"e1"', {"urn:uuid:a"}

    assert ifheader.evaluate(ifheader.parse('(<urn:uuid:a> ["e1"])'), "/p", state)
    assert not ifheader.evaluate(ifheader.parse('(<urn:uuid:a> ["e2"])'), "/p", state)
    assert ifheader.evaluate(ifheader.parse('(<urn:uuid:b>) (Not <DAV:no-lock>)'), "/p", state)
    assert not ifheader.evaluate(ifheader.parse('(<DAV:no-lock>)'), "/p", state)
    assert ifheader.submitted_tokens(ifheader.parse('(<urn:uuid:b>) (Not <urn:uuid:c>)')) == {"urn:uuid:b"}
