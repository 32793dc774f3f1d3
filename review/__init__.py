"""Review operations: where the review page is, requeue, and who may review.

The page and its API are the stack's own (functions/reviews, docs/review.md).
"""
