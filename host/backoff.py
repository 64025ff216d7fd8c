"""The one retry backoff: the wait before the next try doubles with each failure, from `first` up to `cap` seconds.
Used for MCP reconnects, Bot API outages and model-server retries. Imports nothing from the host."""


def backoff(failures: int, first: float, cap: float = float("inf")) -> float:
    """Seconds to wait after `failures` failures in a row (0 after none)."""
    if failures <= 0:
        return 0.0
    return min(cap, first * 2.0 ** min(failures - 1, 64))
