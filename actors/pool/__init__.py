"""The Whisper worker pool: the one owner of the Whisper workers, for every way in."""

from actors.pool.pool import WhisperPool
from actors.pool.workers import MAX_ATTEMPTS, Completion, PoolError, Ticket, WorkerSlot

__all__ = ["MAX_ATTEMPTS", "Completion", "PoolError", "Ticket", "WhisperPool", "WorkerSlot"]
