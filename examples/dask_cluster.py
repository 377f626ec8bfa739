"""Heavy sync steps on a Dask cluster, async I/O steps on the local event loop.

Starts a LocalCluster of two worker processes. The CPU-bound steps are plain `def` functions
and go to the cluster through the `distributed.Client` given as the pipeline's executor; the
async steps stay on the local loop. To use an existing cluster instead, connect the client to
its scheduler: `Client("tcp://scheduler-host:8786")`.
"""

import asyncio

from distributed import Client, LocalCluster, get_worker

from pipeliner_rx import Pipeline

pipeline = Pipeline()


@pipeline.step(provides="numbers")
async def fetch_numbers(count):
    await asyncio.sleep(0.01)  # I/O: stays on the local event loop
    return list(range(count))


@pipeline.step(provides=("squares", "squares_worker"))
def sum_of_squares(numbers):
    return sum(n * n for n in numbers), get_worker().name  # CPU: runs on a worker


@pipeline.step(provides=("cubes", "cubes_worker"))
def sum_of_cubes(numbers):
    return sum(n**3 for n in numbers), get_worker().name


@pipeline.step()
async def summary(squares, squares_worker, cubes, cubes_worker):
    return [
        ("sum_of_squares", squares, squares_worker),
        ("sum_of_cubes", cubes, cubes_worker),
    ]


async def run():
    for step, value, worker in await summary(count=1_000):
        print(f"{step} = {value} (ran on worker {worker})")


def main():
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        pipeline.executor = client
        asyncio.run(run())


if __name__ == "__main__":
    main()
