from pipeliner_rx import add_environment_resources, resource, step


@step(provides="base")
async def base_provider():
    print("base_provider called")
    return 23


@step(provides="result")
async def divide(base, divisor):
    print("divide called")
    return base // divisor


@step(provides="modulus")
async def mod(base, divisor):
    print("mod called")
    return base % divisor


@step(provides=("res_times_mod", "res_minus_mod"))
async def get_resmod(result, modulus):
    print("get_resmod called")
    return result * modulus, result - modulus


@step()
async def get_division(base, result, modulus):
    print("get_division called")
    return base, result, modulus


async def main():
    add_environment_resources(base=38)

    base, result, mod = await get_division(divisor=3)
    divisor = await resource("divisor")
    print(base, "divided by", divisor, "is", result, "with", mod, "left")

    times, minus = await get_resmod()  # All prerequisites already exist
    print("result * modulus is", times, "and result - modulus is", minus)


if __name__ == "__main__":
    import asyncio

    asyncio.run(main())
