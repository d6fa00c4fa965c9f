"""Selective forwarding unit: forwards RTP between aiortc peer connections without transcoding."""
