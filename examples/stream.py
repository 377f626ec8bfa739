"""A stream of inputs piped through a pipeline with `compute`, composed with Rx operators."""

import asyncio
import random

import reactivex
from reactivex import operators as ops

from pipeliner_rx import Pipeline

pipeline = Pipeline()


@pipeline.step(provides="words")
async def tokenize(text):
    await asyncio.sleep(random.uniform(0, 0.05))  # uneven work: results still come in order
    return text.split()


@pipeline.step(provides="longest")
async def longest_word(words):
    return max(words, key=len)


@pipeline.step(provides="count")
async def count_words(words):
    return len(words)


async def main():
    messages = [
        "reactive pipelines compose",
        "each item gets a fresh scope",
        "results arrive in input order",
        "",
        "at most three items in flight",
    ]
    done = asyncio.get_running_loop().create_future()
    reactivex.from_iterable(messages).pipe(
        ops.filter(bool),  # ordinary Rx operators before ...
        ops.map(lambda text: {"text": text}),
        pipeline.compute("count", "longest", max_concurrency=3),
        ops.map(lambda result: f"{result[0]} words, longest: {result[1]}"),  # ... and after
    ).subscribe(
        print,
        on_error=done.set_exception,
        on_completed=lambda: done.set_result(None),
    )
    await done


if __name__ == "__main__":
    asyncio.run(main())
