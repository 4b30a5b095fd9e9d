"""``factory pairing …``, ``factory bindings …``, ``factory secrets …``, ``factory app-token …``.

Stored text that came from users (ids, names) is printed with markup off: it is shown as written.
"""

from __future__ import annotations

import secrets as random_tokens
import sys
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError

from contracts.errors import InvalidInput, NotFound
from contracts.ingress import AppToken, PairingCode, PairingCodeRequest, new_pairing_code, token_hash
from contracts.models import to_wire
from contracts.secrets import new_key, require, reseal_all
from factory.console import (
    JsonOption,
    StoreOption,
    out,
    plain,
    print_json,
    print_rows,
    store_settings,
    with_store,
    without_hash,
)
from factory.console import when as _when
from factory.stores import FullStore, secrets_box

pairing_app = typer.Typer(help="One-time codes that bind a Telegram user to an agent.", no_args_is_help=True)
bindings_app = typer.Typer(help="Which Telegram users talk to which agent.", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets, sealed at rest with FACTORY_SECRETS_KEY.", no_args_is_help=True)
tokens_app = typer.Typer(help="Bearer tokens for the app API.", no_args_is_help=True)


# --------------------------------------------------------------------------- pairing


@pairing_app.command("create")
def pairing_create(
    agent: Annotated[str, typer.Option("--agent", help="The agent the code binds a user to.")],
    ttl: Annotated[int, typer.Option("--ttl", min=60, max=86_400, help="Seconds until it expires.")] = 900,
    user: Annotated[str | None, typer.Option("--user", help="Your app's id for the user, if any.")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A single-use code: the user sends `/start CODE` to the agent's bot to pair."""
    try:
        request = PairingCodeRequest(code=new_pairing_code(), agent_key=agent, ttl_ms=ttl * 1000, consumer_user_id=user)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None

    async def create(opened: FullStore) -> tuple[PairingCode, str | None]:
        code = await opened.create_pairing_code(request)
        webhook = await opened.get_telegram_webhook(agent)
        link = f"https://t.me/{webhook.bot_username}?start={code.code}" if webhook and webhook.bot_username else None
        return code, link

    code, link = with_store(store, create, role="ingress")
    if as_json:
        print_json({**to_wire(code), **({"deepLink": link} if link else {})})
        return
    out.print(f"pairing code {plain(request.code)} for agent {plain(agent)}, valid for {ttl} s")
    out.print(f"the user sends:  /start {plain(request.code)}")
    if link:
        out.print(f"or opens:        {plain(link)}")


@pairing_app.command("status")
def pairing_status(
    code: Annotated[str, typer.Argument(help="The pairing code.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Whether a code is pending, used (and by whom) or expired."""
    found = with_store(store, lambda s: s.get_pairing_code(code), role="ingress")
    if found is None:
        raise InvalidInput("CODE", f"no pairing code {code!r} in this store")
    if as_json:
        print_json(found)
        return
    who = f" by Telegram user {plain(found.telegram_user_id)}" if found.telegram_user_id else ""
    agent = plain(found.agent_key)
    out.print(f"{plain(found.code)}: {found.status}{who}; agent {agent}; expires {_when(found.expires_at)}")


# --------------------------------------------------------------------------- bindings


@bindings_app.command("list")
def bindings_list(
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked bindings.")] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Active identity bindings (Telegram user → agent)."""
    rows = with_store(store, lambda s: s.list_bindings(agent, all_), role="ingress")
    print_rows(
        rows,
        as_json,
        ("binding", "agent", "bot", "telegram user", "status", "since"),
        lambda b: (
            *(plain(n) for n in (b.binding_id, b.agent_key, b.bot_id, b.telegram_user_id)),
            b.status,
            _when(b.bound_at),
        ),
        "no bindings",
    )


@bindings_app.command("revoke")
def bindings_revoke(binding_id: Annotated[str, typer.Argument(help="The binding.")], store: StoreOption = None) -> None:
    """End a binding: the user's next message goes to the fallback agent (or is refused)."""
    if not with_store(store, lambda s: s.revoke_binding(binding_id), role="ingress"):
        raise NotFound("active binding", binding_id)
    out.print(f"revoked {plain(binding_id)}")


# --------------------------------------------------------------------------- secrets


@secrets_app.command("keygen")
def secrets_keygen() -> None:
    """Print a new key for FACTORY_SECRETS_KEY (keep it out of the store and out of logs)."""
    print(new_key())


@secrets_app.command("set")
def secrets_set(
    secret_ref: Annotated[str, typer.Argument(help="e.g. telegram.botToken.default")], store: StoreOption = None
) -> None:
    """Seal and store a secret read from the prompt or stdin (never from the command line)."""
    value = typer.prompt("value", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()
    if not value.strip():
        raise InvalidInput("value", "must not be empty")
    version = with_store(store, lambda s: s.import_secret(secret_ref, SecretStr(value.strip())), role="secrets")
    out.print(f"{plain(secret_ref)} stored (version {version})")


@secrets_app.command("status")
def secrets_status(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Every secret's name, version, last update and key id. Never a value."""
    rows = with_store(store, lambda s: s.secret_status(), role="secrets")
    print_rows(
        rows,
        as_json,
        ("secret", "version", "updated", "key"),
        lambda r: (plain(r.secret_ref), str(r.version), _when(r.updated_at), r.key_id or "NOT SEALED"),
        "no secrets",
    )


@secrets_app.command("rotate-key")
def secrets_rotate_key(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Re-seal every value under FACTORY_SECRETS_KEY; the old key goes in FACTORY_SECRETS_PREVIOUS_KEYS."""
    box = require(secrets_box(store_settings(store)), "re-seal the secrets")
    report = with_store(store, lambda s: reseal_all(s, box), role="secrets")
    if as_json:
        print_json({"resealed": report.resealed, "alreadyCurrent": report.already_current, "keyId": report.key_id})
        return
    out.print(f"re-sealed {report.resealed} value(s) under key {report.key_id}; {report.already_current} already were")


# --------------------------------------------------------------------------- app tokens


@tokens_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="The app's name (its conversations are namespaced by it).")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A new bearer token, shown once: the store keeps only its hash."""
    token = "fat_" + random_tokens.token_urlsafe(32)

    async def create(opened: FullStore) -> AppToken:
        record = AppToken(
            token_id="tok_" + random_tokens.token_hex(6),
            name=name,
            token_hash=token_hash(token),
            created_at=await opened.now_ms(),
        )
        return await opened.create_app_token(record)

    try:
        record = with_store(store, create, role="secrets")
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
    if as_json:
        print_json({"tokenId": record.token_id, "name": record.name, "token": token})
        return
    out.print(f"app token {record.token_id} for {plain(name)} (shown once; send it as Authorization: Bearer …):")
    print(token)


@tokens_app.command("list")
def token_list(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Tokens by id and app name (never the token)."""
    rows = with_store(store, lambda s: s.list_app_tokens(), role="secrets")
    print_rows(
        rows,
        as_json,
        ("token", "app", "created", "revoked"),
        lambda r: (r.token_id, plain(r.name), _when(r.created_at), _when(r.revoked_at)),
        "no app tokens",
        wire=without_hash,
    )


@tokens_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token id.")], store: StoreOption = None) -> None:
    """Revoke a token at once."""
    if not with_store(store, lambda s: s.revoke_app_token(token_id), role="secrets"):
        raise NotFound("app token", token_id)
    out.print(f"revoked {plain(token_id)}")
