"""Demo traffic: creates orders, moves them through their statuses, and makes some requests fail.

    python examples/traffic.py --orders-url http://127.0.0.1:8001 --orders 20

Failing requests on purpose: unknown orders (404), forbidden status changes
(409) and, with ``--error-rate``, simulated server errors (500).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, field

import httpx

FLOW = ("paid", "shipped", "delivered")


@dataclass
class TrafficResult:
    """What the generator did, by outcome."""

    order_ids: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def run(orders_url: str, *, orders: int, error_rate: float = 0.1, seed: int = 7) -> TrafficResult:
    """Drive the orders service; returns the created order ids and the status codes seen."""
    rng = random.Random(seed)
    result = TrafficResult()
    with httpx.Client(base_url=orders_url, timeout=15) as client:
        for index in range(orders):
            headers = {"X-Request-ID": f"traffic-{seed}-{index}"}
            if rng.random() < error_rate:
                headers["X-Simulate-Failure"] = "1"
            response = client.post(
                "/orders", json={"customer": f"customer-{index}", "amount": 10 + index}, headers=headers
            )
            result.count(response.status_code)
            if response.status_code != 201:
                continue
            order_id = response.json()["orderId"]
            result.order_ids.append(order_id)
            for status in FLOW[: rng.randint(0, len(FLOW))]:
                result.count(client.post(f"/orders/{order_id}/status", json={"status": status}).status_code)
            if rng.random() < 0.3:  # a forbidden transition: 409
                result.count(client.post(f"/orders/{order_id}/status", json={"status": "new"}).status_code)
            result.count(client.get(f"/orders/{order_id}").status_code)
        result.count(client.get("/orders/ORD-missing").status_code)  # 404
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders-url", default="http://127.0.0.1:8001")
    parser.add_argument("--orders", type=int, default=20, help="orders to create (default 20)")
    parser.add_argument("--error-rate", type=float, default=0.1, help="share of simulated 500s (default 0.1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--duration",
        type=float,
        default=0,
        help="keep going in rounds for this many seconds (default: one round)",
    )
    args = parser.parse_args(argv)
    result = run(args.orders_url, orders=args.orders, error_rate=args.error_rate, seed=args.seed)
    deadline = time.monotonic() + args.duration
    round_number = 0
    while time.monotonic() < deadline:
        round_number += 1
        more = run(
            args.orders_url, orders=args.orders, error_rate=args.error_rate, seed=args.seed + round_number
        )
        result.order_ids += more.order_ids
        for status, count in more.statuses.items():
            result.statuses[status] = result.statuses.get(status, 0) + count
        time.sleep(1)
    json.dump({"orderIds": result.order_ids, "statuses": result.statuses}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
