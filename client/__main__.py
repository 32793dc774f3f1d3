"""python -m client: submit photos and read outcomes, against a deployed stack (--stack) or the local twin."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from client.api import ApiError, FrontDoor
from client.bucket import empty_bucket
from client.console import WIDTH, elide, format_columns
from client.onboard import SCOPES, OnboardError, onboard_team
from client.redrive import redrive
from client.submit import SubmitError, Submission, key_for, photos, submit
from contracts.results import ResultRecord, scan_results
from contracts.stack import TWIN_OUTPUTS, TWIN_PORT, TargetError, stack, twin


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where (default: the local twin)")
    where.add_argument("--stack", metavar="NAME", help="a deployed stack, e.g. scones-vehicle-classifier")
    where.add_argument("--region", help="the stack's region (default: AWS_DEFAULT_REGION or ~/.aws/config)")
    where.add_argument("--profile", help="AWS profile for --stack")
    where.add_argument("--port", type=int, default=TWIN_PORT, help=f"the twin's port (default {TWIN_PORT})")
    where.add_argument("--outputs", type=Path, default=TWIN_OUTPUTS,
                       help="the twin's outputs file, for ApiUrl and TokenUrl (default build/twin/outputs.json)")

    top = argparse.ArgumentParser(prog="python -m client", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    send = commands.add_parser("submit", parents=[common], help="upload photos and wait for each outcome",
                               description="Upload photos (files or folders of images) to the intake bucket and "
                                           "print each one's outcome as it is recorded.")
    send.add_argument("paths", nargs="+", type=Path, metavar="PHOTO_OR_FOLDER")
    send.add_argument("--prefix", default="photos", help="key prefix in the intake bucket (default: photos)")
    send.add_argument("--timeout", type=float, default=120, help="seconds to wait for all outcomes (default 120)")
    send.add_argument("--api", action="store_true",
                      help="through the HTTP API as another team would (POST /photos, upload, GET /photos/{id}), "
                           "with the app client in SCONES_CLIENT_ID and SCONES_CLIENT_SECRET (python -m client "
                           "onboard-team); the key is the server's, --prefix does not apply")
    team = commands.add_parser(
        "onboard-team", parents=[common], help="give another team's service an app client for the API",
        description="Create an app client (client-credentials grant) for a team in the stack's user pool with the "
                    "scopes it may use, and admit it to the API's JWT authorizer: on AWS by adding it to the stack "
                    "parameter PartnerClientIds (a stack update), on the twin by updating the authorizer. Prints the "
                    "client id and the command that reads its secret.")
    team.add_argument("team", help="the team's name: lower-case letters, digits and hyphens (client name team-NAME)")
    team.add_argument("--scopes", default="submit,read",
                      help=f"comma-separated, of {', '.join(SCOPES)} (default submit,read)")
    read = commands.add_parser("results", parents=[common], help="print every recorded outcome",
                               description="Print every record of the results table.")
    read.add_argument("--json", action="store_true", help="one JSON object per line")
    again = commands.add_parser(
        "redrive", parents=[common], help="start again what an outage left behind",
        description="Start a new execution for every record that failed for a transient reason (endpoint "
                    "down or throttled, a passing Lambda or Step Functions fault) and for every message in the "
                    "rule's and the record's dead-letter queues; a message is deleted once its execution started.")
    again.add_argument("--dry-run", action="store_true", help="list what would be started; change nothing")
    commands.add_parser("empty-bucket", parents=[common], help="delete every object version in the intake bucket",
                        description="Delete every object, version and delete marker in the intake bucket, so that "
                                    "`sam delete` can delete the stack (make delete runs both).")
    return top


# Outcome lines print as records arrive, so their columns are fixed: key, outcome, label, confidence, time,
# then the reason (failures only) at the end of the line.
_WIDTHS = (12, 10, 5, 6)


def format_table(records: list[ResultRecord]) -> str:
    """One row per record; label and confidence are the model's, a reviewer's decision is in the last column."""
    rows = [("key", "outcome", "label", "confidence", "reason / decision")]
    for r in records:
        confidence = f"{r['confidence']:.3f}" if "confidence" in r else "-"
        audit = " (audit)" if r.review_reason == "audit" else ""
        note = f"{r.human_label} by {r.get('reviewer', '?')}{audit}" if r.human_label else r.get("reason", "")
        rows.append((r.key, r["outcome"], r.get("label", "-"), confidence, note))
    return format_columns(rows)


def _line(s: Submission, key_width: int) -> str:
    record = s.record or {}
    confidence = f"{record['confidence']:.3f}" if "confidence" in record else "-"
    took = f"{s.seconds:.1f}s" if s.seconds is not None else "-"
    cells = (record.get("outcome", "no outcome"), record.get("label", "-"), confidence, took)
    line = "  ".join([elide(s.key, key_width).ljust(key_width)] + [c.ljust(w) for c, w in zip(cells, _WIDTHS)])
    return f"{line}  {record.get('reason', '')}".rstrip()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        target = stack(args.stack, args.region, args.profile) if args.stack else twin(args.port, args.outputs)
        if args.command == "submit":
            return _submit_through_api(target, args) if args.api else _submit(target, args)
        if args.command == "onboard-team":
            done = onboard_team(target, args.team, args.scopes, on_twin=not args.stack)
            token_url = target.outputs.get("TokenUrl", "(the stack output TokenUrl)")
            print(f"app client {done.client_name}: {done.client_id}\n  scopes: {' '.join(done.scopes)}\n"
                  f"  {done.audience_note}\n  its secret (give it to the team; keep it out of code and logs):\n"
                  f"    {done.secret_command}\n  token URL: {token_url}")
            return 0
        if args.command == "redrive":
            done = redrive(target, dry_run=args.dry_run, log=print)
            verb = "would start" if args.dry_run else "started"
            print(f"{verb} {done.total} executions: {len(done.failed_records)} failed records, "
                  f"{done.rule_dead_letters} undelivered uploads, {done.record_dead_letters} unwritten outcomes")
            return 0
        if args.command == "empty-bucket":
            deleted = empty_bucket(target.client("s3"), target.bucket)
            print(f"deleted {deleted} object versions and delete markers from s3://{target.bucket}")
            return 0
        items = scan_results(target.client("dynamodb"), target.table)
        if args.json:
            for item in items:
                print(json.dumps(item))
        else:
            print(format_table(items))
            print(f"\n{len(items)} records in {target.table}")
        return 0
    except (TargetError, SubmitError, OnboardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError, RuntimeError, ApiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def _submit(target, args) -> int:
    print(f"submitting to s3://{target.bucket}/{args.prefix.strip('/')}/ on {target.description} ...", flush=True)
    files = photos(args.paths)
    longest = max(len(key_for(args.prefix, name)) for _, name in files)
    # Room for the key in 80 columns next to the fixed cells (a failure's reason may run past them).
    key_width = max(20, min(longest, WIDTH - sum(_WIDTHS) - 2 * len(_WIDTHS)))
    results = submit(target, files, args.prefix, args.timeout,
                     on_outcome=lambda s: print(_line(s, key_width), flush=True))
    late = [s for s in results if s.record is None]
    for s in late:
        print(_line(s, key_width))
    counts: dict[str, int] = {}
    for s in results:
        outcome = (s.record or {}).get("outcome", "no outcome")
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"{len(results)} photos: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
    if late:
        print(f"{len(late)} without an outcome after {args.timeout:g}s: is the stack's workflow running? "
              "(their records may still arrive: `python -m client results`)", file=sys.stderr)
    return 1 if late else 0


def _submit_through_api(target, args) -> int:
    client_id, secret = os.environ.get("SCONES_CLIENT_ID"), os.environ.get("SCONES_CLIENT_SECRET")
    if not client_id or not secret:
        raise TargetError("--api needs the team's app client in SCONES_CLIENT_ID and SCONES_CLIENT_SECRET "
                          "(python -m client onboard-team NAME prints how to get them)")
    missing = [k for k in ("ApiUrl", "TokenUrl") if k not in target.outputs]
    if missing:
        raise TargetError(f"{target.description} has no {' or '.join(missing)}: deploy the current template, or "
                          f"for the twin pass the outputs file it wrote (--outputs)")
    door = FrontDoor(target.outputs["ApiUrl"], target.outputs["TokenUrl"], client_id, secret)
    files = photos(args.paths)
    print(f"submitting {len(files)} photos through {target.outputs['ApiUrl']} ...", flush=True)
    started = time.monotonic()
    sent = [(name, door.submit(path)) for path, name in files]
    late = 0
    for name, photo in sent:
        state = door.wait(photo, max(1.0, args.timeout - (time.monotonic() - started)))
        late += state["state"] == "pending"
        decided = state.get("label") or state.get("reason") or ""
        confidence = f"{state['confidence']:.3f}" if "confidence" in state else "-"
        print(f"{elide(name, 30).ljust(30)}  {photo.id}  {state['state']:<12} {decided:<12} {confidence}", flush=True)
    if late:
        print(f"{late} still pending after {args.timeout:g}s", file=sys.stderr)
    return 1 if late else 0


if __name__ == "__main__":
    sys.exit(main())
