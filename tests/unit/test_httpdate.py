"""dav.httpdate against the standard library's formatter."""

import random
from email.utils import formatdate

from safehold.dav.httpdate import http_date


def test_http_date_matches_formatdate() -> None:
    rng = random.Random(8)
    stamps = [0.0, 784111777.0, 951782400.0, 1764271826.5, 4102444799.999, 253402300799.0]
    stamps += [rng.uniform(0, 4102444800) for _ in range(2000)]
    for ts in stamps:
        assert http_date(ts) == formatdate(ts, usegmt=True), ts


def test_http_date_example_from_rfc_9110() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
