"""Atlassian Resource Identifiers: parse, build, validate.

The generic grammar is ``ari:cloud:{product}:{siteId}:{type}/{id}``; the site ID may be empty
(``ari:cloud:ecosystem::app/<uuid>``). Everything forge-runner sends as an ARI (app ID,
installation ID, the context ARI of ``offlineUserAuthToken``) passes through here before any
request, so a malformed one stops the run at load time instead of at the gateway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PRODUCT = r"[a-z][a-z0-9.-]*"
_SITE = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_TYPE = r"[a-z][a-zA-Z0-9._-]*"
# IDs are UUIDs, cloud IDs, numbers, and for identity ARIs account IDs ("557058:<uuid>"), so
# ':' and '/' are allowed inside; whitespace, commas and quotes never are.
_ID = r"[A-Za-z0-9._~:/@+-]+"
_ARI = re.compile(
    rf"ari:cloud:(?P<product>{_PRODUCT}):(?P<site>(?:{_SITE})?):(?P<type>{_TYPE})/(?P<id>{_ID})"
)

FORM = "ari:cloud:{product}:{siteId}:{type}/{id}"


class AriError(ValueError):
    """Not an ARI of the expected form. ``expected`` names the form, ``found`` the text."""

    def __init__(self, expected: str, found: str):
        self.expected = expected
        self.found = found
        super().__init__(f"expected an ARI of the form {expected}, found {found!r}")


@dataclass(frozen=True)
class Ari:
    """A parsed ARI. ``str(ari)`` gives it back in its canonical form."""

    product: str
    site_id: str
    type: str
    id: str

    def __str__(self) -> str:
        return f"ari:cloud:{self.product}:{self.site_id}:{self.type}/{self.id}"


def parse_ari(text: str) -> Ari:
    """Parse ``text`` as an ARI; AriError naming the expected form if it is not one."""
    match = _ARI.fullmatch(text)
    if match is None:
        raise AriError(FORM, text)
    return Ari(match["product"], match["site"], match["type"], match["id"])


def build_ari(product: str, site_id: str, type: str, id: str) -> str:
    """Build an ARI from its parts, checking the result against the grammar."""
    return str(parse_ari(f"ari:cloud:{product}:{site_id}:{type}/{id}"))


def validate_ari(
    text: str, *, product: str | None = None, type: str | None = None
) -> Ari:
    """Parse ``text`` and check its product and resource type when given.

    AriError says what was expected: ``ari:cloud:ecosystem:{siteId}:app/{id}``.
    """
    try:
        ari: Ari | None = parse_ari(text)
    except AriError:
        ari = None
    wanted_product = product or "{product}"
    wanted_type = type or "{type}"
    if (
        ari is None
        or (product is not None and ari.product != product)
        or (type is not None and ari.type != type)
    ):
        raise AriError(f"ari:cloud:{wanted_product}:{{siteId}}:{wanted_type}/{{id}}", text)
    return ari


def is_ari(text: str) -> bool:
    """Whether ``text`` follows the ARI grammar."""
    return _ARI.fullmatch(text) is not None
