"""``python -m vtonlab profile``: print the active profile (or a named one)."""

from __future__ import annotations

import json

from vtonlab.profiles import PROFILES, get_profile


def register(sub) -> None:
    p = sub.add_parser("profile", help="print the active profile (VTONLAB_PROFILE, else gpu/cpu by hardware)")
    p.add_argument("name", nargs="?", help=f"a profile to show instead of the active one ({', '.join(PROFILES)})")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--all", action="store_true", help="print every profile")
    p.set_defaults(func=run)


def run(args) -> int:
    profiles = list(PROFILES.values()) if args.all else [get_profile(args.name)]
    for prof in profiles:
        print(json.dumps(prof.to_dict(), indent=1) if args.json else prof.table())
    return 0
