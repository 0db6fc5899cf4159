"""``keel plan`` and ``keel apply``: definitions as code from the command line (see keel.defs).

    keel -w team.keel plan defs/              # exit 0: nothing to do, 1: changes, 2 and up: an error
    keel -w team.keel apply defs/             # all or nothing; creates the workspace if it is new
    keel -w team.keel apply defs/ --prune     # also removes what defs/ no longer declares: asks first
    keel -w team.keel apply defs/ --prune --yes   # in CI: the plan printed above is the confirmation
"""

from __future__ import annotations

import os
import sys

from keel import errors


def _workspace(args) -> str:
    path = args.workspace or os.environ.get("KEEL_WORKSPACE")
    if not path:
        raise errors.InvalidArgument("no workspace given: pass --workspace PATH or set KEEL_WORKSPACE")
    return path


def cmd_plan(args, out) -> int:
    from keel import defs
    plan = defs.plan(_workspace(args), args.paths, prune=args.prune)
    out.emit(plan.to_dict(), str(plan))
    return plan.exit_code


def _confirmed(plan, args, out) -> bool:
    """--yes, or a person typing yes at the prompt; refused when nobody can be asked."""
    if args.yes:
        return True
    listing = ", ".join(c.ref for c in plan.removals)
    if out.as_json or not sys.stdin.isatty():
        raise errors.InvalidArgument(f"--prune would remove {len(plan.removals)} object(s): {listing}; nothing was "
                                     "changed. Read the plan (keel plan --prune) and re-run with --yes to confirm")
    print(plan)
    answer = input(f"\nRemove the {len(plan.removals)} object(s) marked '-' above? Only 'yes' confirms: ")
    return answer.strip() == "yes"


def cmd_apply(args, out) -> int:
    from keel import defs
    path = _workspace(args)
    if args.prune:
        preview = defs.plan(path, args.paths, prune=True)
        if preview.removals and not _confirmed(preview, args, out):
            print("Nothing was changed.", file=sys.stderr)
            return 1
        result = defs.apply_confirmed(path, args.paths, preview)
    else:
        result = defs.apply(path, args.paths)
    out.emit(result.to_dict(), str(result))
    return 0


def add_commands(groups, leaf) -> None:
    p = leaf(groups, "plan", cmd_plan, "what `keel apply` would change, changing nothing "
                                       "(exit 0: nothing to do, 1: changes, 2 and up: an error)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="folders or .py files of definitions")
    p.add_argument("--prune", action="store_true", help="also list what the definitions no longer declare")
    p = leaf(groups, "apply", cmd_apply, "make the workspace match the definitions, all or nothing")
    p.add_argument("paths", nargs="+", metavar="PATH", help="folders or .py files of definitions")
    p.add_argument("--prune", action="store_true",
                   help="also remove what the definitions no longer declare (asks first; views are retired, "
                        "their data kept)")
    p.add_argument("--yes", "-y", action="store_true", help="confirm the removals of --prune without asking")
