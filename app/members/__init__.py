"""Members: hosts seen through heartbeat events (the `heartbeat` beacon), alive or failed."""
