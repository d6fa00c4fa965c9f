"""The pure core: protocol, session, heartbeat, codes, errors, auth, config. No I/O library, nothing else of the project."""
