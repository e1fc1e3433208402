"""`msgstate token`: mint a read token for the HTTP API, for a chat backend's scripts and tests."""

from __future__ import annotations

import click

from msgstate.schemas.exceptions import ConfigError
from msgstate.streams.sdk.tokens import mint_token
from msgstate.workers.config import Settings


@click.command("token")
@click.option("--messages", "patterns", metavar="PATTERN", multiple=True, required=True,
              help="A message id the token may read, or a prefix ending in `*` (any rest); "
                   "repeat it, or list more patterns after it.")
@click.argument("more", metavar="[PATTERN]...", nargs=-1)
@click.option("--ttl", type=click.IntRange(1), default=3600, show_default=True,
              help="Seconds until the token expires.")
@click.option("--kid", default=None,
              help="Sign with this key of MSGSTATE_HTTP_TOKEN_KEYS instead of the first one.")
def token(patterns: tuple[str, ...], more: tuple[str, ...], ttl: int, kid: str | None) -> None:
    """Print a bearer token for the HTTP API, signed with a key of MSGSTATE_HTTP_TOKEN_KEYS.

        msgstate token --messages 'layer:///messages/*' --ttl 3600
    """
    keys = Settings.from_env().http_token_keys
    if not keys:
        raise ConfigError("MSGSTATE_HTTP_TOKEN_KEYS is not set: there is no key to sign the token with")
    key = keys[0] if kid is None else next((k for k in keys if k.key_id == kid), None)
    if key is None:
        raise ConfigError(f"MSGSTATE_HTTP_TOKEN_KEYS has no key {kid!r}; it has "
                          f"{', '.join(k.key_id for k in keys)}")
    click.echo(mint_token(key, [*patterns, *more], ttl))
