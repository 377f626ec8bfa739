"""A live progress display on a 30-step pipeline (needs the `progress` extra: rich).

The pipeline is generated: 10 downloads, 10 parses, 9 checks of neighbouring parses, and one
report; independent steps run concurrently, and the display shows them start and finish.
"""

import asyncio
import inspect

from pipeliner_rx import Pipeline
from pipeliner_rx.progress import progress

pipeline = Pipeline()


def add_step(name, needs, provides, delay):
    """Register a generated step that sleeps, then sums its inputs (plus one)."""

    async def run(**inputs):
        await asyncio.sleep(delay)
        return sum(inputs.values()) + 1

    run.__name__ = run.__qualname__ = name
    run.__signature__ = inspect.Signature(
        [inspect.Parameter(need, inspect.Parameter.KEYWORD_ONLY) for need in needs]
    )
    return pipeline.step(provides=provides)(run)


for i in range(10):
    add_step(f"download_{i}", [], f"raw_{i}", 0.05 + 0.03 * (i % 4))
    add_step(f"parse_{i}", [f"raw_{i}"], f"rows_{i}", 0.05)
for i in range(9):
    add_step(f"check_{i}", [f"rows_{i}", f"rows_{i + 1}"], f"check_{i}", 0.05)
report = add_step("report", [f"check_{i}" for i in range(9)], None, 0.02)


async def main():
    plan = pipeline.plan(report)
    with progress(pipeline, total=len(plan.runs), description="report"):
        value = await report()
    print(f"{len(plan.runs)} steps ran; report = {value}")


if __name__ == "__main__":
    asyncio.run(main())
