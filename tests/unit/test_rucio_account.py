"""Account mapping for real IAM names: the transforms, the route order, the messages when none fits.

The lookup route's real answer (Rucio's ``/accounts/whoami``) is checked against the real Rucio
server in ``tests/integration/test_rucio_accounts.py``; here it is passed in as Rucio's result.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from hub_config.rucio import AccountError, LookupResult, account_for, choose_account
from hub_config.rucio.account import routes_of, transform_account
from hub_config.settings.rucio import ReplaceTransform, RucioInstance

BASE = {"name": "lake", "display_name": "Lake", "rucio_host": "https://r", "auth_host": "https://a"}
ESCAPE_TRANSFORMS: list[Any] = ["lowercase", {"replace": {".": "_"}}, "drop_invalid", "truncate"]
DAVE = {"sub": "da0e", "preferred_username": "dave.smith", "email": "dave.smith@escape.test"}


def inst(**fields: Any) -> RucioInstance:
    return RucioInstance.model_validate({**BASE, **fields})


# --- transforms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "steps", "expected"),
    [
        ("Dave.Smith", ["lowercase"], "dave.smith"),
        ("dave.smith", [{"replace": {".": "_"}}], "dave_smith"),
        ("dave.smith", [{"replace": {".": ""}}], "davesmith"),
        ("o'neil.ann-marie", ["drop_invalid"], "oneilann-marie"),
        ("a" * 30, ["truncate"], "a" * 25),
        ("Émile.Zola+Test@CERN", ESCAPE_TRANSFORMS, "mile_zolatestcern"),
        ("x", [], "x"),
    ],
)
def test_transforms_apply_in_order(value: str, steps: list[Any], expected: str) -> None:
    """Each step does one thing; the ESCAPE list turns an IAM name into a Rucio name."""
    parsed = inst(account_template="{username}", account_transforms=steps).account_transforms
    assert transform_account(value, parsed) == expected


def test_order_of_steps_matters() -> None:
    """Dropping before replacing loses the dot the replace would have turned into `_`."""
    replace = ReplaceTransform(replace={".": "_"})
    assert transform_account("a.b", ["drop_invalid", replace]) == "ab"
    assert transform_account("a.b", [replace, "drop_invalid"]) == "a_b"


def test_replace_applies_each_pair_in_order() -> None:
    """Several replacements in one step run in the order written."""
    step = ReplaceTransform(replace={".": "-", "@": "_at_"})
    assert transform_account("a.b@c", [step]) == "a-b_at_c"


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (["upper"], "unknown transform 'upper'"),
        ([{"replace": {".": "A"}}], "would put characters Rucio refuses"),
        ([{"replace": {".": " "}}], "would put characters Rucio refuses"),
        ([{"replace": {}}], "at least 1 item"),
        ([{"replace": {"": "x"}}], "at least 1 character"),
        ([{"truncate": 10}], "must be {replace: {from: to}}"),
        ([7], "expected a transform name"),
    ],
)
def test_invalid_transforms_are_refused_with_one_clear_message(steps: list[Any], message: str) -> None:
    """validate catches a wrong step before any user spawns, in one message (not one per union branch)."""
    with pytest.raises(ValidationError, match=message) as info:
        inst(account_template="{username}", account_transforms=steps)
    assert info.value.error_count() == 1


def test_template_rules() -> None:
    """Unknown placeholders, format specs and broken braces are refused; transforms need a template route."""
    with pytest.raises(ValidationError, match="unknown placeholder"):
        inst(account_template="{login}")
    with pytest.raises(ValidationError, match="no format spec"):
        inst(account_template="{username!r}")
    with pytest.raises(ValidationError, match="not a valid template"):
        inst(account_template="{username")
    with pytest.raises(ValidationError, match="account_transforms apply to account_template"):
        inst(account_claim="rucio_account", account_transforms=["lowercase"])


# --- routes ----------------------------------------------------------------------------------


def test_routes_configured_and_their_order() -> None:
    """claim → template → lookup; a null template means `{username}` only when nothing else is set."""
    assert routes_of(inst()) == ("template",)
    assert inst().effective_account_template == "{username}"
    assert routes_of(inst(account_claim="c")) == ("claim",)
    assert routes_of(inst(account_lookup=True)) == ("lookup",)
    both = inst(account_lookup=True, account_claim="c", account_template="{preferred_username}")
    assert routes_of(both) == ("claim", "template", "lookup")


def test_dave_gets_the_claim_when_sent() -> None:
    """The claim wins over the template even when the template would give a valid name."""
    i = inst(
        account_claim="rucio_account", account_template="{preferred_username}", account_transforms=ESCAPE_TRANSFORMS
    )
    choice = choose_account(i, username="dave.smith", claims={**DAVE, "rucio_account": "dsmith"})
    assert (choice.account, choice.route, choice.tried) == ("dsmith", "claim", ())


def test_missing_claim_falls_through_to_the_template() -> None:
    """A user without the claim gets the transformed template, and the skipped claim is recorded."""
    i = inst(
        account_claim="rucio_account", account_template="{preferred_username}", account_transforms=ESCAPE_TRANSFORMS
    )
    choice = choose_account(i, username="dave.smith", claims=DAVE)
    assert (choice.account, choice.route) == ("dave_smith", "template")
    assert choice.tried == ("claim 'rucio_account': the user's claims have no (string) 'rucio_account' claim",)


def test_invalid_claim_falls_through_and_the_claim_is_never_transformed() -> None:
    """`Dave.Smith` in the claim is not fixed up (that would be a guess): the template route is next."""
    i = inst(account_claim="rucio_account", account_template="u{sub}")
    choice = choose_account(i, username="x", claims={**DAVE, "rucio_account": "Dave.Smith"})
    assert (choice.account, choice.route) == ("uda0e", "template")
    assert "'Dave.Smith' is not a valid Rucio account name" in choice.tried[0]


def test_template_without_transforms_still_refuses_dotted_names() -> None:
    """Nothing is changed unless the site says so."""
    with pytest.raises(AccountError, match="'dave.smith' is not a valid Rucio account name"):
        account_for(inst(), username="dave.smith", claims=DAVE)


def test_lookup_comes_last_and_only_when_asked() -> None:
    """With claim and template failing, the lookup's answer is used; before it is asked, it is pending."""
    i = inst(account_claim="rucio_account", account_template="{preferred_username}", account_lookup=True)
    choice = choose_account(i, username="dave.smith", claims=DAVE)
    assert choice.account is None and choice.lookup_pending
    assert account_for(i, username="dave.smith", claims=DAVE, looked_up=LookupResult("dsmith")) == "dsmith"
    valid = inst(account_template="{sub}", account_lookup=True)
    assert not choose_account(valid, username="x", claims=DAVE).lookup_pending, "a valid template wins"


def test_every_route_tried_is_named_when_none_gives_an_account() -> None:
    """The user sees each route and why it gave nothing, in order, in one message; no token in it."""
    i = inst(account_claim="rucio_account", account_template="{preferred_username}", account_lookup=True)
    reason = "Rucio has no account for SUB=da0e, ISS=https://iam/ (or refused the token)"
    with pytest.raises(AccountError) as info:
        account_for(i, username="dave.smith", claims=DAVE, looked_up=LookupResult(None, reason))
    assert str(info.value) == (
        "Rucio instance 'lake': claim 'rucio_account': the user's claims have no (string) 'rucio_account' claim; "
        "template '{preferred_username}': 'dave.smith' is not a valid Rucio account name "
        "(lowercase a-z, 0-9, '-', '_', at most 25 characters); "
        "Rucio lookup: Rucio has no account for SUB=da0e, ISS=https://iam/ (or refused the token)"
    )


def test_lookup_answer_is_checked_too() -> None:
    """Even Rucio's own answer goes through the account schema before reaching a config file."""
    i = inst(account_lookup=True)
    with pytest.raises(AccountError, match="Rucio lookup: 'bad name' is not a valid"):
        account_for(i, username="x", claims={}, looked_up=LookupResult("bad\nname"))
    with pytest.raises(AccountError, match="Rucio lookup: not asked"):
        account_for(i, username="x", claims={})


def test_template_that_transforms_to_nothing_says_so() -> None:
    """`drop_invalid` on an all-foreign name yields an empty name, reported as such."""
    i = inst(account_template="{preferred_username}", account_transforms=["drop_invalid"])
    with pytest.raises(AccountError, match="became an empty name"):
        account_for(i, username="x", claims={"preferred_username": "李.王"})


def test_escape_case_long_dotted_names_fit_rucio() -> None:
    """A long IAM name with dots and capitals becomes a valid 25-character account."""
    i = inst(account_template="{preferred_username}", account_transforms=ESCAPE_TRANSFORMS)
    name = "Maximilian.Alexander.Von-Humboldt"
    assert account_for(i, username="x", claims={"preferred_username": name}) == "maximilian_alexander_von-"
