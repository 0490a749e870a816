"""Reasons: a stable code with the item's particulars in fields of their own, redacted before
they are cut; a detail from a journal written before codes reads as its message."""

from __future__ import annotations

import json
import secrets

from runner.journal.reasons import (
    MAX_MESSAGE_CHARS,
    Reason,
    fields_of,
    http,
    report_fields,
    text_of,
    user_refused,
)
from runner.logs.redact import REDACTED, register_secret


def test_a_secret_across_the_cut_is_hidden_whole() -> None:
    """A registered token that straddles the message's length limit is redacted before the
    message is cut, so no piece of it survives."""
    secret = "tok" + secrets.token_hex(20)
    register_secret(secret)
    # Cut first, the message would keep the secret's first 19 characters.
    message = "x" * (MAX_MESSAGE_CHARS - 20) + " " + secret + " and more"
    detail = json.loads(Reason("http-400", message, {"status": 400}).detail())
    assert secret[:8] not in detail["message"]
    assert detail["message"].endswith(f" {REDACTED} and more")
    assert detail["status"] == 400


def test_the_detail_keeps_fields_and_target_apart_from_the_code() -> None:
    """The code names the kind; the account, status and target are the detail's fields."""
    reason = http(404, ("Issue does not exist.",))
    fields = fields_of(reason.detail("POST /rest/api/3/issue/MIG-9/comment"))
    assert reason.code == "http-404"
    assert fields == {"status": 404, "message": "Issue does not exist.",
                      "target": "POST /rest/api/3/issue/MIG-9/comment"}
    assert text_of("http-404") == "not found, or the user can't see it (http 404)"


def test_refusals_get_a_code_by_their_words() -> None:
    """Deactivated, no access, and any other refusal are three codes whatever the account."""
    assert user_refused("User 5b10 is deactivated and cannot be impersonated").code == (
        "user-deactivated")
    assert user_refused("User 5b11 does not have access to the app").code == "user-no-access"
    assert user_refused("anonymous users cannot be impersonated").code == "user-refused"


def test_an_older_journals_free_text_reads_as_its_message() -> None:
    """A reason and detail journaled before codes show as they are."""
    assert report_fields("HTTP 404", "Issue does not exist") == {
        "reason": "HTTP 404", "reason_text": "HTTP 404", "message": "Issue does not exist",
        "target": "", "status": None, "waited_s": None}
    assert fields_of("{not json") == {"message": "{not json"}
