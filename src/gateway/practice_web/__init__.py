"""The practice inbox web page for staff (issue 17), served by the gateway's HTTP server under /practice/.

accounts.py   staff accounts, Argon2id password hashes (`otv practice user add|remove|list`)
sessions.py   cookie sessions in the state store, with idle and absolute expiry
csrf.py       per-session tokens on every form, compared in constant time
throttle.py   login throttling per account and per client address
desk.py       what the page needs of gateway.practice_desk
rendering.py  Jinja2 (autoescape on), German labels and messages
events.py     the live inbox as server-sent events
routes.py     the pages and forms
"""

from gateway.practice_web.accounts import StaffAccounts
from gateway.practice_web.routes import PracticeWeb

__all__ = ["PracticeWeb", "StaffAccounts"]
