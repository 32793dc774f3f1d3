"""python -m review: the review page for the photos the model is unsure of (and the audit sample).

    python -m review                      the page for the local twin (make local), on http://127.0.0.1:4592
    python -m review --stack NAME         the page for a deployed stack (attach the stack's ReviewerPolicy)
    python -m review requeue [--dry-run]  send every undecided record's review message again
    python -m review add-reviewer NAME --email ADDRESS   let a person review (the reviewers group)
    python -m review remove-reviewer NAME [--delete]     take that right away again
"""

from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys
import threading

from botocore.exceptions import BotoCoreError, ClientError

from client.target import REVIEW_PAGE_PORT, TWIN_PORT, Target, TargetError, stack, twin
from review.decisions import Reviewer
from review.ground_truth import GroundTruth
from review.page import ReviewService, create_app
from review.requeue import requeue
from review.reviewers import ReviewerError, add_reviewer, remove_reviewer
from review.waiting import WaitingImages

NEEDED_OUTPUTS = ("ReviewQueueUrl", "GroundTruthBucketName")


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
    top.add_argument("--host", default="127.0.0.1",
                     help="address the page listens on (default 127.0.0.1: this machine only)")
    top.add_argument("--page-port", type=int, default=REVIEW_PAGE_PORT,
                     help=f"the page's port (default {REVIEW_PAGE_PORT})")
    top.add_argument("--reviewer", default=getpass.getuser(),
                     help="the name decisions are recorded under, until changed on the page (default: your login)")
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    try:
        target = stack(args.stack, args.region, args.profile) if args.stack else twin(args.port)
        if args.command in ("add-reviewer", "remove-reviewer"):
            return _reviewers(target, args)
        missing = [name for name in NEEDED_OUTPUTS if name not in target.outputs]
        if missing:
            raise TargetError(f"{target.description} has no {', '.join(missing)}: deploy this version of "
                              "template.yaml (make deploy), or restart make local")
        if args.command == "requeue":
            sent = requeue(target.client("dynamodb"), target.client("sqs"), target.table,
                           target.outputs["ReviewQueueUrl"], dry_run=args.dry_run, log=print)
            print(f"{'would send' if args.dry_run else 'sent'} {sent} review messages")
            return 0
        return serve(target, args.host, args.page_port, args.reviewer)
    except (TargetError, ReviewerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 130


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


def serve(target: Target, host: str, port: int, reviewer: str) -> int:
    from waitress import create_server

    sqs = target.client("sqs")
    waiting = WaitingImages(sqs, target.outputs["ReviewQueueUrl"], on_unreadable=logging.getLogger("review").warning)
    decisions = Reviewer(target.client("dynamodb"), target.client("events"), target.client("cloudwatch"),
                         target.table, GroundTruth(target.client("s3"), target.outputs["GroundTruthBucketName"]))
    service = ReviewService(waiting, decisions, target.client("s3"), target.description)
    service.refresh(force=True)
    hosts = sorted({host, "127.0.0.1", "localhost"}) if host not in ("0.0.0.0", "::") else None
    app = create_app(service, reviewer, trusted_hosts=[f"{h}:{port}" for h in hosts] + hosts if hosts else None)
    server = create_server(app, host=host, port=port, threads=4)
    stop = threading.Event()
    service.keep_fresh(stop)
    print(f"review page for {target.description}: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
          f"  ({len(waiting.images())} waiting; Ctrl-C stops)", flush=True)
    # `kill` stops the page like Ctrl-C does: the held messages go back to the queue.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run()
    finally:
        stop.set()
        server.close()
        held = len(waiting.images())
        waiting.release()
        print(f"gave {held} undecided images back to the review queue", flush=True)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
