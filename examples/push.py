"""An event-driven app: inputs arrive at different times; the result shows up once all are in.

The observer subscribes first. `reading` comes from a stream (a Subject standing in for a
sensor or a message queue) through `feed`; `location` is pushed later by a timer. The report
step runs as soon as both have arrived, and the observer prints it.
"""

import asyncio

from reactivex.subject import Subject

from pipeliner_rx import Pipeline

pipeline = Pipeline()


@pipeline.step(provides="report")
async def make_report(reading, location):
    return f"{reading:.1f} °C in {location}"


async def main():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    pipeline.observe("report").subscribe(
        lambda report: print("report:", report),
        on_error=done.set_exception,
        on_completed=lambda: done.set_result(None),
    )
    print("waiting for inputs")

    sensor = Subject()
    pipeline.feed("reading", sensor)

    def location_arrives():
        print("location arrived")
        pipeline.add_environment_resources(location="Lisbon")

    loop.call_later(0.05, location_arrives)

    await asyncio.sleep(0.01)
    print("reading arrived")
    sensor.on_next(21.5)
    sensor.on_next(99.0)  # later readings are ignored: the resource is set once

    await asyncio.wait_for(done, 5)


if __name__ == "__main__":
    asyncio.run(main())
