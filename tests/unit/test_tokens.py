"""`switchboard admin token create` makes tokens the server's verifier accepts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from signaling.core.auth import AuthError, TokenVerifier
from signaling.tools.cli import cli

SECRET = "q" * 40


def test_created_token_is_accepted_with_its_grants() -> None:
    result = CliRunner().invoke(
        cli, ["admin", "token", "create", "--key", f"k9:{SECRET}", "--identity", "ada", "--room", "team-*",
              "--grant", "subscribe", "--name", "Ada", "--ttl", "60"],
    )
    assert result.exit_code == 0, result.output
    identity = TokenVerifier({"k9": SECRET}).verify(result.output.strip(), "team-blue")
    assert identity.identity == "ada"
    assert identity.name == "Ada"
    assert identity.grants == frozenset({"subscribe"})
    with pytest.raises(AuthError) as info:
        TokenVerifier({"k9": SECRET}).verify(result.output.strip(), "other")
    assert info.value.close.code == 4003


def test_token_create_needs_a_key() -> None:
    result = CliRunner().invoke(cli, ["admin", "token", "create", "--identity", "a", "--room", "r"], env={"SWITCHBOARD_SECURITY_TOKEN_KEYS": ""})
    assert result.exit_code == 2
    assert "no signing key" in result.output
