"""CardDAV over plain HTTP: PUT vCards, addressbook-query, multiget, address-data
property selection, sync-collection with deletions, preconditions."""

from __future__ import annotations

import re

from tests.support.server import Server

BOOK = "/dav/addressbooks/alice/contacts"
CR = "urn:ietf:params:xml:ns:carddav"


def card(uid: str, fn: str, email: str, version: str = "3.0") -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:{version}\r\nUID:{uid}\r\nFN:{fn}\r\nN:{fn.split()[-1]};"
            f"{fn.split()[0]};;;\r\nEMAIL;TYPE=work:{email}\r\nTEL;TYPE=cell:+49 30 1234\r\n"
            "END:VCARD\r\n").encode()


def _report(c, url: str, body: str, depth: str = "1"):  # type: ignore[no-untyped-def]
    return c.request("REPORT", url, headers={"Depth": depth, "Content-Type": "application/xml"},
                     content=body.encode())


def test_cards_query_multiget_and_sync(server: Server) -> None:
    with server.client() as c:
        r = c.request("PROPFIND", f"{BOOK}/", headers={"Depth": "0"},
                      content=b'<D:propfind xmlns:D="DAV:"><D:prop><D:sync-token/>'
                              b"<D:resourcetype/><D:displayname/></D:prop></D:propfind>")
        assert "addressbook" in r.text and "Contacts" in r.text
        token0 = re.search(r"<D:sync-token>([^<]+)<", r.text).group(1)  # type: ignore[union-attr]
        people = {"ada": ("Ada Lovelace", "ada@example.org"),
                  "grace": ("Grace Hopper", "grace@example.org"),
                  "jose": ("José Martí", "jose@example.org")}
        for uid, (fn, email) in people.items():
            assert c.put(f"{BOOK}/{uid}.vcf", content=card(uid, fn, email),
                         headers={"Content-Type": "text/vcard"}).status_code == 201
        assert c.get(f"{BOOK}/ada.vcf").content == card("ada", "Ada Lovelace", "ada@example.org")

        q = (f'<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="{CR}"><D:prop><D:getetag/>'
             '<CR:address-data><CR:prop name="FN"/></CR:address-data></D:prop>'
             '<CR:filter><CR:prop-filter name="FN"><CR:text-match collation="i;unicode-casemap" '
             'match-type="contains">JOSÉ</CR:text-match></CR:prop-filter></CR:filter>'
             "</CR:addressbook-query>")
        r = _report(c, f"{BOOK}/", q)
        assert r.status_code == 207
        assert "jose.vcf" in r.text and "ada.vcf" not in r.text
        assert "FN:José Martí" in r.text and "EMAIL" not in r.text

        q = (f'<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="{CR}"><D:prop><D:getetag/></D:prop>'
             '<CR:filter test="anyof"><CR:prop-filter name="EMAIL"><CR:text-match match-type="ends-with">'
             "@example.org</CR:text-match></CR:prop-filter></CR:filter>"
             "<CR:limit><CR:nresults>2</CR:nresults></CR:limit></CR:addressbook-query>")
        r = _report(c, f"{BOOK}/", q)
        assert r.text.count("<D:href>") == 3  # two cards and the truncation marker
        assert "507" in r.text

        mg = (f'<CR:addressbook-multiget xmlns:D="DAV:" xmlns:CR="{CR}"><D:prop><D:getetag/>'
              f"<CR:address-data/></D:prop><D:href>{BOOK}/ada.vcf</D:href>"
              f"<D:href>{BOOK}/missing.vcf</D:href></CR:addressbook-multiget>")
        r = _report(c, f"{BOOK}/", mg)
        assert "Ada Lovelace" in r.text and "404" in r.text

        c.delete(f"{BOOK}/grace.vcf")
        sync = (f'<D:sync-collection xmlns:D="DAV:"><D:sync-token>{token0}</D:sync-token>'
                "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>")
        r = _report(c, f"{BOOK}/", sync, depth="0")
        assert r.status_code == 207
        assert "ada.vcf" in r.text and "jose.vcf" in r.text
        grace = r.text.split("grace.vcf")[1].split("</D:response>")[0]
        assert "404" in grace
        token1 = re.search(r"<D:sync-token>([^<]+)<", r.text).group(1)  # type: ignore[union-attr]
        r = _report(c, f"{BOOK}/", sync.replace(token0, token1), depth="0")
        assert "<D:response>" not in r.text

        bad = sync.replace(token0, "urn:x-safehold:sync:nope:1")
        r = _report(c, f"{BOOK}/", bad, depth="0")
        assert r.status_code == 403 and "valid-sync-token" in r.text


def test_card_preconditions(server: Server) -> None:
    with server.client() as c:
        r = c.put(f"{BOOK}/bad.vcf", content=b"BEGIN:VCARD\r\nFN:x\r\n")
        assert r.status_code == 403 and "valid-address-data" in r.text
        assert c.put(f"{BOOK}/u1.vcf", content=card("u1", "Uma One", "u@example.org")).status_code == 201
        r = c.put(f"{BOOK}/u2.vcf", content=card("u1", "Uma Two", "u@example.org"))
        assert r.status_code == 409 and "no-uid-conflict" in r.text and f"{BOOK}/u1.vcf" in r.text
        v4 = card("v4", "Vera Four", "v@example.org", version="4.0")
        assert c.put(f"{BOOK}/v4.vcf", content=v4).status_code == 201
        assert c.get(f"{BOOK}/v4.vcf").content == v4


def test_extended_mkcol_addressbook(server: Server) -> None:
    body = (f'<D:mkcol xmlns:D="DAV:" xmlns:CR="{CR}"><D:set><D:prop><D:resourcetype><D:collection/>'
            "<CR:addressbook/></D:resourcetype><D:displayname>Work</D:displayname></D:prop></D:set>"
            "</D:mkcol>")
    with server.client() as c:
        r = c.request("MKCOL", "/dav/addressbooks/alice/work/", content=body.encode(),
                      headers={"Content-Type": "application/xml"})
        assert r.status_code == 201
        r = c.request("PROPFIND", "/dav/addressbooks/alice/", headers={"Depth": "1"})
        assert "/dav/addressbooks/alice/work/" in r.text and "Work" in r.text
        r = c.request("MKCOL", "/dav/files/alice/book/", content=body.encode(),
                      headers={"Content-Type": "application/xml"})
        assert r.status_code == 403 and "addressbook-collection-location-ok" in r.text
