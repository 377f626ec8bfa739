"""Many concurrent requests over one pipeline, each in its own scope (a web handler's shape).

Shared configuration is pushed once to the pipeline; each request opens a scope with its own
inputs, so concurrent requests never see each other's values, and each request runs only the
steps it needs.
"""

import asyncio

from pipeliner_rx import Pipeline

pipeline = Pipeline()


@pipeline.step(provides="user")
async def load_user(user_id, users):
    await asyncio.sleep(0.05)  # a database call
    return users[user_id]


@pipeline.step(provides="orders")
async def load_orders(user_id):
    await asyncio.sleep(0.05)  # another service, queried concurrently with load_user
    return [10 * user_id, 5 * user_id]


@pipeline.step(provides="total")
async def total_spent(orders, discount):
    return sum(orders) * (1 - discount)


@pipeline.step()
async def render(user, total):
    return f"{user} spent {total:.2f}"


async def handle(user_id):
    """What a web framework's handler would do for one request."""
    async with pipeline.scope(user_id=user_id):
        return await render()


async def main():
    pipeline.add_environment_resources(users={1: "ada", 2: "grace", 3: "linus"}, discount=0.1)
    pages = await asyncio.gather(*(handle(user_id) for user_id in (1, 2, 3)))
    for page in pages:
        print(page)


if __name__ == "__main__":
    asyncio.run(main())
