"""Pure decisions of the executor: backoff delays, when to retry, deadlines, output truncation."""

from __future__ import annotations

from app.executor.config import RetryConfig
from app.model.events import ResultStatus

__all__ = ["backoff_s", "expired", "should_retry", "truncate"]


def backoff_s(retry: RetryConfig, failed_attempt: int) -> float:
    """Delay before the attempt after `failed_attempt` (1-based): backoff × multiplier^(n-1), capped."""
    delay_ms = retry.backoff_ms * retry.multiplier ** max(0, failed_attempt - 1)
    return min(delay_ms, retry.max_backoff_ms) / 1000


def should_retry(status: ResultStatus, *, retryable: bool, idempotent: bool, attempt: int,
                 retry: RetryConfig) -> bool:
    """Whether a failed attempt gets another one.

    A timed-out attempt of a non-idempotent plugin is not retried: it may have done its work
    before the time ran out, and running it again could do it twice."""
    if attempt >= retry.max_attempts or not retryable:
        return False
    if status == ResultStatus.TIMED_OUT:
        return idempotent
    return status == ResultStatus.FAILED


def expired(deadline_ms: int | None, now_ms: int) -> bool:
    """True when the action has a deadline and it has passed."""
    return deadline_ms is not None and now_ms > deadline_ms


def truncate(text: str, limit_bytes: int) -> str:
    """`text` cut to at most `limit_bytes` of UTF-8 (never mid-character), saying how much was cut."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit_bytes:
        return text
    note = "\n[... {} bytes truncated]"
    keep = max(0, limit_bytes - len(note.format(len(raw))))
    head = raw[:keep].decode("utf-8", errors="ignore")
    return head + note.format(len(raw) - len(head.encode()))
