"""Task ownership for signaling: the one labelled registry type, shared with the SFU.

See :mod:`sfu.tasks` (it lives there because ``sfu`` must not import ``signaling``).
"""

from __future__ import annotations

from sfu.tasks import (
    OwnerKind,
    TaskInfo,
    TaskLabel,
    TaskRegistry,
    adopt,
    count_by_kind,
    count_live_by_kind,
    label_of,
    live_labels,
    snapshot,
)

__all__ = ["OwnerKind", "TaskInfo", "TaskLabel", "TaskRegistry", "adopt", "count_by_kind", "count_live_by_kind", "label_of", "live_labels", "snapshot"]
