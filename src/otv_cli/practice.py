"""`otv practice user add|remove|list`: staff accounts for the practice web page (/practice/).

otv practice user add --practice demo --user anna                  asks for the password twice
echo "$PASSWORD" | otv practice user add --practice demo --user anna   reads it from stdin
otv practice user list [--practice demo]
otv practice user remove --practice demo --user anna

Without --config the demo's state (--state-dir, default var) is used, as `otv demo` keeps it.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from gateway.config import demo_config, load_config
from gateway.practice_web.accounts import StaffAccounts
from gateway.state_store import open_store

__all__ = ["add_parser", "practice_command"]


def add_parser(commands: Any) -> None:
    practice = commands.add_parser("practice", help="the practice's own side (staff web page accounts)")
    users = practice.add_subparsers(dest="action", required=True).add_parser("user", help="staff accounts")
    actions = users.add_subparsers(dest="user_action", required=True)
    for name, help_text in (("add", "create an account or set its password"), ("remove", "delete an account")):
        sub = actions.add_parser(name, help=help_text)
        _where(sub)
        sub.add_argument("--practice", required=True)
        sub.add_argument("--user", required=True, help="user name: a-z, 0-9, '.', '_', '-'")
    listing = actions.add_parser("list", help="list accounts")
    _where(listing)
    listing.add_argument("--practice", help="only this practice's")


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="gateway configuration (default: the demo's)")
    parser.add_argument("--state-dir", type=Path, default=Path("var"), help="the demo's state, without --config")


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Passwort: ")
    if getpass.getpass("Passwort wiederholen: ") != first:
        raise ValueError("the two passwords differ")
    return first


def practice_command(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else demo_config(args.state_dir.resolve())
    practice = getattr(args, "practice", None)
    if practice is not None and practice not in config.practices:
        raise LookupError(f"no practice {practice!r} in the configuration; known: {', '.join(config.practices)}")
    store = open_store(config.gateway.state_store, config.base_dir)
    try:
        accounts = StaffAccounts(store)
        if args.user_action == "add":
            created = accounts.add(args.practice, args.user.lower(), _password())
            print(f"user {args.user.lower()} of practice {practice} {'created' if created else 'password changed'}")
        elif args.user_action == "remove":
            if not accounts.remove(args.practice, args.user.lower()):
                raise LookupError(f"practice {practice} has no user {args.user.lower()}")
            print(f"user {args.user.lower()} of practice {practice} removed (sessions ended)")
        else:
            for practice_id, username in accounts.list(practice):
                print(f"{practice_id}\t{username}")
    finally:
        store.close()
    return 0
