"""asyncio helpers shared by the shell and the SDK: re-exported from :mod:`sfu.tasks`, where the
one task registry lives (``sfu`` must not import ``signaling``; it imports only the standard
library)."""

from __future__ import annotations

from sfu.tasks import cancel_and_wait

__all__ = ["cancel_and_wait"]
