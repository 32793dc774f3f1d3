"""python -m review: where reviewers decide the photos the model is unsure of, and the review operations.

    python -m review                      the review page's address (the local twin's, or --stack NAME's)
    python -m review requeue [--dry-run]  send every undecided record's review message again
    python -m review add-reviewer NAME --email ADDRESS   let a person review (the reviewers group)
    python -m review remove-reviewer NAME [--delete]     take that right away again

The page is served by the stack (ReviewPageUrl): reviewers open it in a browser and sign in with their user pool
user; they need no AWS credentials and no Python. These commands are for operations leads (attach the stack's
ReviewOperationsPolicy to their role on AWS).
"""

from __future__ import annotations

import argparse
import sys

from botocore.exceptions import BotoCoreError, ClientError

from contracts.stack import TWIN_PORT, Target, TargetError, stack, twin
from review.requeue import requeue
from review.reviewers import ReviewerError, add_reviewer, remove_reviewer


def _where(parser: argparse.ArgumentParser, defaults: bool) -> None:
    # The subcommand's copy has no defaults, so `--stack X requeue` and `requeue --stack X` both work.
    default = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
    where = parser.add_argument_group("where (default: the local twin)")
    where.add_argument("--stack", metavar="NAME", default=default(None),
                       help="a deployed stack, e.g. scones-vehicle-classifier")
    where.add_argument("--region", default=default(None),
                       help="the stack's region (default: AWS_DEFAULT_REGION or ~/.aws/config)")
    where.add_argument("--profile", default=default(None), help="AWS profile for --stack")
    where.add_argument("--port", type=int, default=default(TWIN_PORT), help=f"the twin's port (default {TWIN_PORT})")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m review", description=__doc__.splitlines()[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog="\n".join(__doc__.splitlines()[2:]))
    _where(top, defaults=True)
    commands = top.add_subparsers(dest="command")
    again = commands.add_parser("requeue", help="send undecided records' review messages again",
                                description="Send a review message for every record that still waits for a person "
                                            "(needs_review, or an undecided audit), whatever became of its message.")
    _where(again, defaults=False)
    again.add_argument("--dry-run", action="store_true", help="list what would be sent; send nothing")
    add = commands.add_parser("add-reviewer", help="let a person review photos (the reviewers group)",
                              description="Create the person's user with a temporary password (Cognito e-mails it; "
                                          "the twin prints it) and add them to the stack's reviewers group; an "
                                          "existing user is only added to the group.")
    _where(add, defaults=False)
    add.add_argument("user", help="their user name (letters, digits and . _ @ + -)")
    add.add_argument("--email", required=True, help="their e-mail address (where Cognito sends the password)")
    remove = commands.add_parser("remove-reviewer", help="take a person out of the reviewers group",
                                 description="Remove the person from the reviewers group and sign them out "
                                             "everywhere; an access token already issued works until it expires "
                                             "(at most an hour).")
    _where(remove, defaults=False)
    remove.add_argument("user")
    remove.add_argument("--delete", action="store_true", help="also delete their user")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        target = stack(args.stack, args.region, args.profile) if args.stack else twin(args.port)
        if args.command in ("add-reviewer", "remove-reviewer"):
            return _reviewers(target, args)
        if args.command == "requeue":
            if "ReviewQueueUrl" not in target.outputs:
                raise TargetError(f"{target.description} has no ReviewQueueUrl: deploy this version of "
                                  "template.yaml (make deploy), or restart make local")
            sent = requeue(target.client("dynamodb"), target.client("sqs"), target.table,
                           target.outputs["ReviewQueueUrl"], dry_run=args.dry_run, log=print)
            print(f"{'would send' if args.dry_run else 'sent'} {sent} review messages")
            return 0
        return _where_the_page_is(target)
    except (TargetError, ReviewerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _where_the_page_is(target: Target) -> int:
    url = target.outputs.get("ReviewPageUrl")
    if not url:
        raise TargetError(f"{target.description} names no ReviewPageUrl: deploy this version of template.yaml "
                          "(make deploy), or restart make local")
    print(f"the review page of {target.description}: {url}\n"
          "reviewers sign in there with their user (python -m review add-reviewer NAME --email ADDRESS adds one)")
    return 0


def _reviewers(target: Target, args: argparse.Namespace) -> int:
    if args.command == "remove-reviewer":
        remove_reviewer(target, args.user, delete=args.delete)
        print(f"{args.user} is no longer a reviewer on {target.description}"
              + (" and their user is deleted" if args.delete else "") + "; signed out everywhere")
        return 0
    added = add_reviewer(target, args.user, args.email, on_twin=not args.stack)
    if not added.created:
        print(f"{args.user} already had a user on {target.description}; now also a reviewer")
    elif added.temporary_password:
        print(f"{args.user} is a reviewer on {target.description}; temporary password (the twin sends no e-mail; "
              f"they choose their own at first sign-in): {added.temporary_password}")
    else:
        print(f"{args.user} is a reviewer on {target.description}; Cognito has e-mailed a temporary password to "
              f"{args.email} (they choose their own at first sign-in)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
