"""Where rooms, membership and peer-to-peer delivery live: memory (default) or Redis."""

from signaling.backend.base import Backend, BackendUnavailable, Delivery, Member
from signaling.backend.memory import MemoryBackend

__all__ = ["Backend", "BackendUnavailable", "Delivery", "Member", "MemoryBackend"]
