"""`make benchmark-twin`: how fast the local twin turns uploads into records, on this machine.

Prints, from one run: sustained images per second for bursts of uploads from many client threads, the
upload-to-record latency (p50/p95) with no other load and under load, and the twin's CPU time per image (its
own process, which serves the emulated AWS services and the endpoint, plus its Lambda worker processes).
The clients run in a process of their own, as `aws s3 cp` or a driver's app would, so their work is not
counted as the twin's. Every upload must end in a record: the run exits 1 if any is lost.

``--front-door N`` also sends N photos through the HTTP API as another team's service would (a token by the
client-credentials grant, POST /photos, the presigned upload, GET /photos/{id}?wait= until decided) and the same
N straight into the bucket, in the same run, and prints the front door's throughput as a share of direct uploads.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from client.api import FrontDoor, Photo
from client.onboard import onboard_team
from contracts.results import wait_for_records
from contracts.stack import TWIN_CREDENTIALS, TWIN_REGION
from contracts.stack import twin as twin_target
from local.twin import ROOT, Twin, TwinSettings, free_port

SAMPLES = sorted((ROOT / "local" / "sample_images").rglob("*.png"))
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Burst:
    uploads: int
    recorded: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float
    worker_cpu_seconds: float  # the part of cpu_seconds spent in the Lambda worker processes

    @property
    def lost(self) -> int:
        return self.uploads - self.recorded

    @property
    def per_second(self) -> float:
        return self.recorded / self.seconds

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000 * self.cpu_seconds / max(1, self.recorded)

    @property
    def worker_cpu_ms_per_image(self) -> float:
        return 1000 * self.worker_cpu_seconds / max(1, self.recorded)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def twin_cpu_seconds(twin: Twin) -> tuple[float, float]:
    """CPU time so far of (the twin's own process, its live Lambda workers), from Linux's /proc."""
    workers = 0.0
    for pid in twin._runtime.pids() if twin._runtime else []:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            workers += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return sum(os.times()[:2]), workers


def _drive(url: str, bucket: str, table: str, keys: list[str], threads: int, timeout_s: float, answers) -> None:
    """The client process: upload every key at once from ``threads`` threads, then wait for every record.
    Sends back (when each upload finished, when each record was first seen) on the monotonic clock, which is
    the same for every process of the machine."""
    session = boto3.session.Session(region_name=TWIN_REGION, **TWIN_CREDENTIALS)
    config = Config(max_pool_connections=threads, retries={"mode": "standard", "max_attempts": 5})
    s3 = session.client("s3", endpoint_url=url, config=config)
    dynamodb = session.client("dynamodb", endpoint_url=url, config=config)
    bodies = [p.read_bytes() for p in SAMPLES]
    sent: dict[str, float] = {}

    def upload(i: int) -> None:
        s3.put_object(Bucket=bucket, Key=keys[i], Body=bodies[i % len(bodies)])
        sent[keys[i]] = time.monotonic()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(upload, range(len(keys))))
    seen: dict[str, float] = {}
    # A burst lasts tens of seconds: polling 4 times a second is precise enough and leaves the twin its CPU.
    wait_for_records(dynamodb, table, bucket, set(keys), timeout_s,
                     on_found=lambda key: seen.setdefault(key, time.monotonic()), poll_s=0.25)
    answers.send((sent, seen))


def burst(twin: Twin, uploads: int, threads: int = 8, prefix: str = "bench", timeout_s: float = 600) -> Burst:
    """``uploads`` photos from ``threads`` client threads in another process at once; waits for every record."""
    keys = [f"{prefix}/{uploads}-{i:05d}.png" for i in range(uploads)]
    burst_, _ = _measure(twin, uploads, _drive, (twin.url, twin.outputs["IntakeBucketName"],
                                                 twin.outputs["ResultsTableName"], keys, threads, timeout_s))
    return burst_


def _measure(twin: Twin, count: int, drive, args: tuple) -> tuple[Burst, tuple]:
    """Run ``drive(*args, answers)`` in a client process of its own, with the twin's CPU time measured around it;
    the Burst from the (sent, seen) times it answers, and whatever else it answered."""
    receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
    client = multiprocessing.get_context("spawn").Process(target=drive, name="twin-benchmark-client",
                                                          args=(*args, send))
    cpu_before, started = twin_cpu_seconds(twin), time.monotonic()
    client.start()
    try:
        while not receive.poll(0.5):
            if not client.is_alive():
                raise RuntimeError(f"the benchmark's client process ended with exit code {client.exitcode}")
        sent, seen, *rest = receive.recv()
    finally:
        client.join()
    seconds = (max(seen.values()) if seen else time.monotonic()) - started
    own, workers = (after - before for after, before in zip(twin_cpu_seconds(twin), cpu_before))
    return Burst(count, len(seen), seconds, [seen[k] - sent[k] for k in seen], own + workers, workers), tuple(rest)


def _drive_front_door(api_url: str, token_url: str, client_id: str, secret: str, photos: int, threads: int,
                      timeout_s: float, answers) -> None:
    """The client process of a front-door burst: each thread is a client of its own (its own token), submits its
    share of photos, then long-polls each one until it is decided. Sends back (sent, seen, states)."""
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    states: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s

    def client(first: int) -> None:
        door = FrontDoor(api_url, token_url, client_id, secret)
        mine: list[tuple[int, Photo]] = []
        for i in range(first, photos, threads):
            mine.append((i, door.submit(SAMPLES[i % len(SAMPLES)])))
            sent[i] = time.monotonic()
        for i, photo in mine:
            state = door.wait(photo, max(1.0, deadline - time.monotonic()))
            if state["state"] != "pending":
                seen[i] = time.monotonic()
            states[state["state"]] = states.get(state["state"], 0) + 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(client, range(threads)))
    answers.send((sent, seen, states))


def front_door_burst(twin: Twin, photos: int, threads: int, timeout_s: float = 900) -> tuple[Burst, dict[str, int]]:
    done = onboard_team(twin_target(twin.settings.port), f"bench-{photos}-{int(time.time())}", "submit,read",
                        on_twin=True)
    secret = twin.client("cognito-idp").describe_user_pool_client(
        UserPoolId=twin.outputs["UserPoolId"], ClientId=done.client_id)["UserPoolClient"]["ClientSecret"]
    time.sleep(1.5)  # the API takes up the new audience within a second
    door, (states,) = _measure(twin, photos, _drive_front_door, (twin.outputs["ApiUrl"], twin.outputs["TokenUrl"],
                                                                 done.client_id, secret, photos, threads, timeout_s))
    return door, states


def idle_latency(twin: Twin, count: int = 20) -> list[float]:
    """Upload to record, one photo at a time with nothing else running."""
    s3, bucket = twin.client("s3"), twin.outputs["IntakeBucketName"]
    latencies = []
    for i in range(count):
        key = f"idle/{i:03d}.png"
        started = time.monotonic()
        s3.put_object(Bucket=bucket, Key=key, Body=SAMPLES[i % len(SAMPLES)].read_bytes())
        if twin.wait_for_results({key}, 60, poll_s=0.005):
            latencies.append(time.monotonic() - started)
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, nargs="+", default=[300, 1000],
                        help="uploads per burst (default 300 1000)")
    parser.add_argument("--threads", type=int, default=8, help="client threads uploading at once (default 8)")
    parser.add_argument("--idle", type=int, default=20, help="photos for the no-load latency (default 20)")
    parser.add_argument("--front-door", type=int, metavar="N",
                        help="instead of the bursts: N photos through the HTTP API and N uploaded directly, in the "
                             "same run (the issue's measure: 1000 with --threads 16)")
    args = parser.parse_args(argv)
    counts = [*args.bursts, args.threads, args.idle] + ([] if args.front_door is None else [args.front_door])
    if min(counts) < 1:
        parser.error("--bursts, --threads, --idle and --front-door must be positive")
    for noisy in ("werkzeug", "moto"):  # a log line per request would be measured too
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    print(f"twin benchmark on {os.cpu_count()} CPUs (figures are noisy when the machine is shared)", flush=True)
    lost = 0
    if args.front_door:
        return compare_front_door(args.front_door, args.threads)
    with Twin(TwinSettings(port=free_port(), stack_name="scones-bench")) as twin:
        idle_latency(twin, 3)  # warm: first imports, first connections
        idle = idle_latency(twin, args.idle)
        print(f"no other load, {len(idle)} photos one at a time: upload->record p50 {percentile(idle, .5):.3f}s, "
              f"p95 {percentile(idle, .95):.3f}s", flush=True)
        print(f"{'uploads':>8} {'img/s':>7} {'p50 s':>7} {'p95 s':>7} {'CPU ms/img':>11} {'in workers':>11} "
              f"{'lost':>5}")
        for n in args.bursts:
            result = burst(twin, n, args.threads)
            lost += result.lost
            print(f"{n:>8} {result.per_second:>7.1f} {percentile(result.latencies, .5):>7.2f} "
                  f"{percentile(result.latencies, .95):>7.2f} {result.cpu_ms_per_image:>11.0f} "
                  f"{result.worker_cpu_ms_per_image:>11.0f} {result.lost:>5}", flush=True)
    return 1 if lost else 0


def compare_front_door(photos: int, threads: int) -> int:
    """The front door against direct uploads, same twin, same run; exits 1 if either loses a photo."""
    def row(name: str, b: Burst) -> str:
        return (f"{name:<12} {b.uploads:>7} {b.per_second:>7.1f} {percentile(b.latencies, .5):>7.2f} "
                f"{percentile(b.latencies, .95):>7.2f} {b.cpu_ms_per_image:>11.0f} {b.lost:>5}")

    settings = TwinSettings(port=free_port(), stack_name="scones-bench", api_port=free_port(), auth_port=free_port())
    with Twin(settings) as twin:
        # Warm both paths first, every worker of every function as a burst needs them: the measure is steady
        # state, not the twin's process start-ups (a Lambda cold start is another benchmark's business).
        burst(twin, 2 * threads, threads, prefix="warm")
        front_door_burst(twin, 2 * threads, threads)
        print(f"{'path':<12} {'photos':>7} {'img/s':>7} {'p50 s':>7} {'p95 s':>7} {'CPU ms/img':>11} {'lost':>5}",
              flush=True)
        direct = burst(twin, photos, threads, prefix="direct")
        print(row("direct S3", direct), flush=True)
        door, states = front_door_burst(twin, photos, threads)
        print(row("front door", door), flush=True)
    print(f"front door: {door.per_second / direct.per_second:.0%} of direct uploads' throughput "
          f"(target 80%); outcomes {dict(sorted(states.items()))}; {threads} client threads", flush=True)
    return 1 if door.lost or direct.lost else 0


if __name__ == "__main__":
    sys.exit(main())
