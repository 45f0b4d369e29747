"""Running asyncio tests without a pytest plugin (test support).

`@run_async` turns `async def test_x(fixtures...)` into a plain test that pytest calls with
the same fixtures; each test gets a fresh event loop and a deadline, so a hang fails the test
instead of stalling the run.
"""

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

TEST_DEADLINE_S = 60.0


def run_async(
    fn: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., None]:
    @functools.wraps(fn)  # pytest reads the fixtures from the wrapped signature
    def test(*args: Any, **kwargs: Any) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(TEST_DEADLINE_S):
                await fn(*args, **kwargs)

        asyncio.run(bounded())

    return test
