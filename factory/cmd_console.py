"""``factory console token …``: operator tokens for the console under ``factory serve``'s /console.

A token is printed once; the store keeps its SHA-256. ``rotate`` issues a new token for a name and
revokes the old ones, which signs their sessions out at once.
"""

from __future__ import annotations

import secrets
from typing import Annotated

import typer
from pydantic import ValidationError

from contracts.console import OperatorRole, OperatorToken, new_operator_token
from contracts.errors import InvalidInput, NotFound
from contracts.ingress import token_hash
from contracts.roles import ConsoleStore
from factory.console import JsonOption, StoreOption, out, plain, print_json, print_rows, when, with_store, without_hash

console_app = typer.Typer(help="The operator console under `factory serve` (/console).", no_args_is_help=True)
token_app = typer.Typer(help="Operator tokens: sign-in to the console.", no_args_is_help=True)
console_app.add_typer(token_app, name="token")

ReadOnlyOption = Annotated[
    bool, typer.Option("--read-only", help="May look at everything, change nothing (default: admin).")
]


async def mint(store: ConsoleStore, name: str, role: OperatorRole) -> tuple[str, OperatorToken]:
    """A new operator token for ``name``: (the token, shown once; the stored record)."""
    token = new_operator_token()
    try:
        record = OperatorToken(
            token_id="op_" + secrets.token_hex(6),
            name=name,
            role=role,
            token_hash=token_hash(token),
            created_at=await store.now_ms(),
        )
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
    return token, await store.create_operator_token(record)


def _show(token: str, record: OperatorToken, as_json: bool, verb: str) -> None:
    if as_json:
        print_json({"tokenId": record.token_id, "name": record.name, "role": record.role, "token": token})
        return
    role = "admin" if record.role == "admin" else "read-only"
    out.print(f"{verb} operator token {record.token_id} for {plain(record.name)} ({role}); shown once, sign in with:")
    print(token)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who signs in with it (shown in the console and its logs).")],
    read_only: ReadOnlyOption = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A new operator token, shown once: the store keeps only its hash."""
    token, record = with_store(store, lambda s: mint(s, name, "read_only" if read_only else "admin"), role="console")
    _show(token, record, as_json, "created")


@token_app.command("rotate")
def token_rotate(
    name: Annotated[str, typer.Argument(help="The operator whose token to replace.")],
    read_only: ReadOnlyOption = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A new token for NAME; its old tokens are revoked and their sessions end at once."""

    async def rotate(opened: ConsoleStore) -> tuple[str, OperatorToken, int]:
        old = [t for t in await opened.list_operator_tokens() if t.name == name and t.revoked_at is None]
        if not old:
            raise InvalidInput(
                "NAME", f"no live operator token for {name!r}; create one with `factory console token create`"
            )
        # The new token first: a crash half-way leaves the operator with a token, never without.
        token, record = await mint(opened, name, "read_only" if read_only else "admin")
        for each in old:
            await opened.revoke_operator_token(each.token_id)
        return token, record, len(old)

    token, record, revoked = with_store(store, rotate, role="console")
    if not as_json:
        out.print(f"revoked {revoked} old token(s) of {plain(name)}")
    _show(token, record, as_json, "new")


@token_app.command("list")
def token_list(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Operator tokens by id, name and role (never the token)."""
    rows = with_store(store, lambda s: s.list_operator_tokens(), role="console")
    print_rows(
        rows,
        as_json,
        ("token", "operator", "role", "created", "revoked"),
        lambda r: (r.token_id, plain(r.name), r.role.replace("_", "-"), when(r.created_at), when(r.revoked_at)),
        "no operator tokens",
        wire=without_hash,
    )


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token id.")], store: StoreOption = None) -> None:
    """Revoke a token at once; its sessions end with it."""
    if not with_store(store, lambda s: s.revoke_operator_token(token_id), role="console"):
        raise NotFound("operator token", token_id)
    out.print(f"revoked {plain(token_id)}")
