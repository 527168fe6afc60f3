"""The one check that a CLI's output carries no trace of an auth token."""

from __future__ import annotations

import base64


def token_forms(account: str, token: str) -> tuple[str, ...]:
    """The token, a long piece of it, and the Basic credentials that carry it on the wire."""
    return (
        token,
        token[5:-5],
        base64.b64encode(f"{account}:{token}".encode()).decode(),
        base64.b64encode(token.encode()).decode()[:-4],
    )


def assert_no_token(text: str, account: str, token: str) -> None:
    assert text
    for secret in token_forms(account, token):
        assert secret not in text
