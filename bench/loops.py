"""A closed-loop load: workers that each await one step after another until time is up."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def closed_loop(
    workers: int, seconds: float, step: Callable[[int], Awaitable[Any]]
) -> tuple[int, float]:
    """Run `workers` coroutines, each awaiting `step(its index)` back to back for `seconds`;
    returns (steps done, seconds elapsed)."""
    loop = asyncio.get_running_loop()
    done = 0
    stop = loop.time() + seconds

    async def worker(k: int) -> None:
        nonlocal done
        while loop.time() < stop:
            await step(k)
            done += 1

    start = loop.time()
    await asyncio.gather(*(worker(k) for k in range(workers)))
    return done, loop.time() - start
