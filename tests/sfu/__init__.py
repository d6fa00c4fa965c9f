"""The SFU alone, in process: real aiortc peers on loopback (see sfu_testpeers.py)."""
