"""Drive 1nce-mcp with the official Python MCP SDK, as an independent client would.

Usage: python_client.py MODE TARGET...
  MODE    "legacy" (initialize handshake) or "auto" (server/discover, the stateless revision,
          falling back to initialize)
  TARGET  "stdio COMMAND ARG..." or "http URL"

Lists the tools, calls each one (the SDK validates every structuredContent against the tool's
outputSchema), walks the confirmation flow, and prints one JSON line with what it saw.
Exits non-zero with a message on the first failure.
"""

import asyncio
import json
import sys

from mcp import Client, StdioServerParameters

EXPECTED_TOOLS = {"create_order", "find_orders", "get_order", "list_orders", "list_products"}


def check(condition, message):
    if not condition:
        raise SystemExit(f"interop failure: {message}")


async def exercise(target, mode):
    async with Client(target, mode=mode, raise_exceptions=True) as client:
        tools = (await client.list_tools()).tools
        names = {tool.name for tool in tools}
        check(EXPECTED_TOOLS <= names, f"tools/list gave {sorted(names)}")
        for tool in tools:
            check(tool.output_schema is not None, f"{tool.name} has no outputSchema")

        page = await client.call_tool("list_orders", {"page": 1, "page_size": 3})
        check(not page.is_error, f"list_orders failed: {page.content}")
        orders = page.structured_content["orders"]
        check(len(orders) == 3, f"list_orders returned {len(orders)} orders")
        check("sim_count" in orders[0] and "sims" not in orders[0], "the default list is a summary")
        # Both shapes of a listed order validate against the one output schema (the SDK checks it).
        full = await client.call_tool("find_orders", {"limit": 2, "detail": "full"})
        check(not full.is_error, f"find_orders full failed: {full.content}")
        check("sims" in full.structured_content["orders"][0], "detail full lists the SIMs")

        number = orders[1]["order_number"]
        order = await client.call_tool("get_order", {"order_number": number})
        check(not order.is_error, f"get_order failed: {order.content}")
        check(order.structured_content["order_number"] == number, "get_order returned another order")

        missing = await client.call_tool("get_order", {"order_number": 1})
        check(missing.is_error, "get_order of a missing order did not fail")

        products = await client.call_tool("list_products", {})
        check(not products.is_error, f"list_products failed: {products.content}")
        ids = [p["id"] for p in products.structured_content["products"]]
        check(1001 in ids, f"list_products gave {ids}")

        args = {"products": [{"product_id": 1001, "quantity": 2}], "customer_reference": "python-sdk"}
        preview = await client.call_tool("create_order", args)
        check(not preview.is_error, f"create_order preview failed: {preview.content}")
        check(preview.structured_content["status"] == "confirmation_required", "no preview")
        token = preview.structured_content["confirmation_token"]

        placed = await client.call_tool("create_order", {**args, "confirmation_token": token})
        check(not placed.is_error, f"create_order confirmation failed: {placed.content}")
        check(placed.structured_content["status"] == "placed", "order not placed")

        reused = await client.call_tool("create_order", {**args, "confirmation_token": token})
        check(reused.is_error, "a used confirmation token was accepted")

        return {
            "mode": mode,
            "protocol_version": client.protocol_version,
            "tools": sorted(names),
            "order_number": placed.structured_content["order_number"],
        }


def main():
    mode, kind, *rest = sys.argv[1:]
    if kind == "stdio":
        target = StdioServerParameters(command=rest[0], args=rest[1:])
    elif kind == "http":
        target = rest[0]
    else:
        raise SystemExit(f"unknown target kind {kind!r}")
    print(json.dumps(asyncio.run(exercise(target, mode))))


if __name__ == "__main__":
    main()
