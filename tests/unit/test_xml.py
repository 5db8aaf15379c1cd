from __future__ import annotations

import time

import pytest

from safehold.dav import xml
from safehold.dav.errors import DavError

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<D:propfind xmlns:D="DAV:"><D:prop>&lol3;</D:prop></D:propfind>"""

XXE = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<D:propfind xmlns:D="DAV:"><D:prop>&e;</D:prop></D:propfind>"""


@pytest.mark.parametrize("body", [LAUGHS, XXE, b"<a>", b"not xml", b"<a xmlns:x='' ><x:b/></a>"])
def test_hostile_or_broken_bodies_are_400(body: bytes) -> None:
    t = time.monotonic()
    with pytest.raises(DavError) as info:
        xml.parse(body)
    assert info.value.status == 400
    assert time.monotonic() - t < 1


def test_good_body() -> None:
    root = xml.parse(b'<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>')
    assert root.tag == xml.dav("propfind")


def test_error_body_carries_the_message_even_with_characters_xml_cannot_hold() -> None:
    """A message may quote what a client sent: NUL, control characters and lone surrogates
    become U+FFFD instead of making the error itself fail (lxml refuses them)."""
    body = xml.error_body("valid-calendar-data", "urn:ietf:params:xml:ns:caldav",
                          message="bad line 'X:\x00\x01\ud800' in VEVENT")
    root = xml.parse(body)
    assert root.find("{urn:ietf:params:xml:ns:caldav}valid-calendar-data") is not None
    assert root.findtext("{DAV:}responsedescription") == "bad line 'X:\ufffd\ufffd\ufffd' in VEVENT"
