"""The command lines: switchboard (serve, sfu, admin, loadtest), the admin HTTP client, rolling restart."""
