"""ARIs: parse, build, validate (runner.ari)."""

from __future__ import annotations

import pytest

from runner.config.ari import Ari, AriError, build_ari, is_ari, parse_ari, validate_ari

CLOUD = "5b1e6c3a-0d6f-4e4b-9d0a-2f3c4b5a6d7e"


def test_parse_workspace_ari_gives_its_parts() -> None:
    """A Jira workspace ARI parses into product, site ID, type and ID."""
    ari = parse_ari(f"ari:cloud:jira:{CLOUD}:workspace/{CLOUD}")
    assert ari == Ari("jira", CLOUD, "workspace", CLOUD)
    assert str(ari) == f"ari:cloud:jira:{CLOUD}:workspace/{CLOUD}"


def test_parse_accepts_an_empty_site_id() -> None:
    """App and installation ARIs have no site ID: ari:cloud:ecosystem::app/<uuid>."""
    ari = parse_ari("ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11")
    assert (ari.product, ari.site_id, ari.type) == ("ecosystem", "", "app")


def test_parse_accepts_account_ids_with_colons_in_the_id() -> None:
    """Identity ARIs carry account IDs like 557058:<uuid> in their ID part."""
    ari = parse_ari("ari:cloud:identity::user/557058:f58131cb-b67d-43c7-b30d-6b58d40bd077")
    assert ari.id == "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ari:cloud:jira",
        f"ari:cloud:jira:{CLOUD}:workspace/",
        f"ari:cloud:jira:{CLOUD}:workspace",
        f"ari:cloud:jira:{CLOUD}:/x",
        f"ari:cloud:Jira:{CLOUD}:workspace/{CLOUD}",
        f"ari:other:jira:{CLOUD}:workspace/{CLOUD}",
        f"ari:cloud:jira:{CLOUD}:workspace/{CLOUD},ari:cloud:jira::site/{CLOUD}",
        f" ari:cloud:jira:{CLOUD}:workspace/{CLOUD}",
        "ari:cloud:jira:a b:workspace/x",
    ],
)
def test_parse_rejects_what_is_not_an_ari(text: str) -> None:
    """Malformed ARIs raise AriError naming the expected form and what was found."""
    with pytest.raises(AriError) as info:
        parse_ari(text)
    assert info.value.expected == "ari:cloud:{product}:{siteId}:{type}/{id}"
    assert info.value.found == text
    assert not is_ari(text)


def test_build_gives_the_canonical_text_and_checks_it() -> None:
    """build_ari joins the parts and refuses parts that break the grammar."""
    assert build_ari("jira", CLOUD, "site", CLOUD) == f"ari:cloud:jira:{CLOUD}:site/{CLOUD}"
    with pytest.raises(AriError):
        build_ari("jira", "bad site", "site", CLOUD)


def test_validate_checks_product_and_type() -> None:
    """validate_ari names the product and type that were expected."""
    app = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
    assert validate_ari(app, product="ecosystem", type="app").type == "app"
    with pytest.raises(AriError) as info:
        validate_ari(app, product="ecosystem", type="installation")
    assert info.value.expected == "ari:cloud:ecosystem:{siteId}:installation/{id}"
    with pytest.raises(AriError):
        validate_ari(app, product="jira")
