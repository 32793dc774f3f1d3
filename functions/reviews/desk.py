"""The review desk: a reviewer's list of waiting photos (leased to them) and their decisions on it.

Every photo a listing meets is checked against its record first, so the list holds only photos still
waiting: a decided photo's messages are deleted (after finishing the effects of a decision whose invocation
died half-way), a photo uploaded again since is dropped (its new upload is classified on its own), and a
message naming any bucket but the intake bucket is refused - left to reach the dead-letter queue and its
alarm, never shown, never fetched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from decisions import Decision, DecisionError, Reviewer, State
from leases import Lease, Leases
from previews import READY, Previews
from waiting import NotAReviewRequest, WaitingImage, visible

log = logging.getLogger("reviews")

PAGE_SIZE = 10  # photos on a reviewer's list at once
RECEIVE_ROUNDS = 3  # receives per listing at most: a listing answers in well under a second
# Previews a listing makes at most (each a full read and decode of a photo): the rest come with the page's next
# listing (it lists every 10 s), so a listing answers well within API Gateway's 30 s.
PREVIEWS_PER_LISTING = 3
NOT_RECORDED_RETRY_SECONDS = 10  # the message overtook its record: look again soon
IN_PROGRESS_RETRY_SECONDS = 30  # another invocation is running a decision's effects


class NotLeased(DecisionError):
    """The photo is not on this reviewer's list (decided, their lease ran out, or never theirs)."""


@dataclass
class Listed:
    lease: Lease
    image_url: str | None

    def as_json(self, now: float) -> dict[str, Any]:
        return {**self.lease.image.as_json(now), "image_url": self.image_url,
                "preview": self.lease.preview, "lease_seconds_left": round(max(0.0, self.lease.until - now))}


class ReviewDesk:
    def __init__(self, leases: Leases, reviewer: Reviewer, previews: Previews, intake_bucket: str,
                 clock: Callable[[], float] = time.time):
        self._leases, self._reviewer, self._previews = leases, reviewer, previews
        self._intake, self._clock = intake_bucket, clock

    def list_for(self, reviewer: str) -> list[Listed]:
        """The reviewer's current leases (extended), topped up from the queue, oldest first."""
        now = self._clock()
        mine: dict[str, Lease] = {}
        for lease in self._leases.mine(reviewer):
            if lease.until <= now:
                self._leases.drop(lease)  # ran out: the message is anyone's again
            elif self._still_waiting(lease.image, lease.receipts, lease):
                if lease.until - now < self._leases.lease_seconds / 2 and not self._leases.extend(lease):
                    continue
                mine[lease.image.id] = lease
        for _ in range(RECEIVE_ROUNDS):
            if len(mine) >= PAGE_SIZE:
                break
            messages = self._leases.receive(PAGE_SIZE - len(mine))
            if not messages:
                break
            for message in messages:
                self._take(reviewer, message, mine)
        oldest_first = sorted(mine.values(), key=lambda lease: (lease.image.sent_at, lease.image.id))
        for lease in [lease for lease in oldest_first if not lease.preview][:PREVIEWS_PER_LISTING]:
            self._leases.set_preview(lease, self._previews.make(lease.image))
        return [Listed(lease, self._previews.url(lease.image) if lease.preview == READY else None)
                for lease in oldest_first]

    def waiting(self) -> int:
        return self._leases.waiting()

    def decide(self, reviewer: str, image_id: str, label: str) -> Decision:
        """The reviewer's decision on a photo of their list; its messages and lease go once it is recorded."""
        lease = self._leases.get(reviewer, image_id)
        if lease is None:
            raise NotLeased("this photo is not on your list (decided, or your lease ran out): reload the list")
        try:
            decision = self._reviewer.decide(lease.image, label, reviewer)
        except DecisionError as exc:
            if exc.status == 409:  # decided by someone else, or uploaded again: settle what this lease holds
                self._still_waiting(lease.image, lease.receipts, lease)
            raise
        self._leases.settle(lease)
        self._reviewer.count_backlog(lease.image.endpoint_name, self._leases.waiting())
        return decision

    def _take(self, reviewer: str, message: dict[str, Any], mine: dict[str, Lease]) -> None:
        receipt = message["ReceiptHandle"]
        try:
            image = WaitingImage.from_message(message)
        except NotAReviewRequest as exc:
            # Not ours to delete: after the queue's maxReceiveCount it moves to the dead-letter queue.
            log.warning("message %s refused: %s", message.get("MessageId"), visible(str(exc)))
            return
        if image.bucket != self._intake:
            log.warning("message %s refused: it names bucket %s, not the intake bucket",
                        message.get("MessageId"), visible(image.bucket))
            return
        held = mine.get(image.id)
        if held is not None:  # another copy of a photo already on the list
            self._leases.add_receipt(held, receipt, image.sent_at)
            return
        if self._still_waiting(image, [receipt], None):
            mine[image.id] = self._leases.hold(reviewer, image, receipt)

    def _still_waiting(self, image: WaitingImage, receipts: list[str], lease: Lease | None) -> bool:
        """Whether the photo still waits for a person; if not, its messages (and lease) are dealt with."""
        state = self._reviewer.state(image)
        if state == State.WAITING:
            return True
        if state == State.ABANDONED:
            decision = self._reviewer.take_over(image)
            if decision is None:
                state = State.IN_PROGRESS  # another invocation took it over first
            else:
                log.info("finishing the recorded decision on %s, left unfinished", visible(image.key))
                self._reviewer.finish(decision)
                state = State.SETTLED
        if state == State.SETTLED:
            self._leases.delete_messages(receipts)
        else:
            seconds = NOT_RECORDED_RETRY_SECONDS if state == State.NOT_RECORDED else IN_PROGRESS_RETRY_SECONDS
            for receipt in receipts:
                self._leases.retry_later(receipt, seconds)
        if lease is not None:
            self._leases.drop(lease)
        return False
