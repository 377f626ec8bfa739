"""A live dashboard: prices and a config change; only what they affect recomputes.

`prices` stands for a market feed and `config` for a settings screen; both are pushed into a
live store. The report is observed: each consistent report is printed once. Two pushes in the
same loop iteration make one revision; a push of an equal value changes nothing; a config
change reruns the exchange rate and the report, not the portfolio's value.
"""

import asyncio

from pipeliner_rx import Pipeline

pipeline = Pipeline()


@pipeline.step(provides="portfolio_value")
async def value(prices, holdings):
    return sum(prices[symbol] * count for symbol, count in holdings.items())


@pipeline.step(provides="rate")
async def exchange_rate(config):
    await asyncio.sleep(0.01)  # a lookup
    return {"USD": 1.0, "EUR": 0.9}[config["currency"]]


@pipeline.step(provides="report")
async def make_report(portfolio_value, rate, config):
    return f"portfolio: {portfolio_value * rate:,.2f} {config['currency']}"


async def main():
    async with pipeline.live(
        holdings={"ACME": 10, "INIT": 5},
        prices={"ACME": 12.0, "INIT": 40.0},
        config={"currency": "USD"},
    ) as live:
        live.observe("report").subscribe(print)
        await live.get("report")

        live.push(prices={"ACME": 12.5, "INIT": 40.0})
        await live.get("report")

        live.push(prices={"ACME": 12.0, "INIT": 41.0})  # superseded in the same iteration
        live.push(prices={"ACME": 13.0, "INIT": 41.0})
        await live.get("report")

        live.push(config={"currency": "EUR"})
        await live.get("report")

        live.push(prices={"ACME": 13.0, "INIT": 41.0})  # equal: nothing runs
        await live.get("report")

        stats = live.stats
        print(f"{stats.step_runs} step runs in {stats.revisions} revisions")


if __name__ == "__main__":
    asyncio.run(main())
