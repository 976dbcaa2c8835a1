"""The HTTP clients delivery could use, side by side: requests per second and per CPU second.

    python benchmarks/bench_http_clients.py [--requests N] [--concurrency C] [--rounds R]

Sends N JSON POSTs (~600 bytes, three paths as three destinations) with C at a time over
keep-alive connections to a minimal asyncio HTTP/1.1 receiver on 127.0.0.1 (its own
process, answering 200 at once), with httpx and with aiohttp, in interleaved rounds; prints
the median of each. Delivery uses aiohttp because of this comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import socket
import statistics
import time
from typing import Awaitable, Callable

import aiohttp
import httpx

BODY = b'{"type":"identify","userId":"u1","traits":{"email":"a@example.com","plan":"pro"}}' * 7


def _receiver(sock: socket.socket) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


async def with_httpx(urls: list[str], total: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                reply = await client.post(urls[i % 3], content=BODY,
                                          headers={"Content-Type": "application/json"})
                assert reply.status_code == 200
        await asyncio.gather(*(one(i) for i in range(total)))


async def with_aiohttp(urls: list[str], total: int, concurrency: int) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                async with session.post(urls[i % 3], data=BODY,
                                        headers={"Content-Type": "application/json"}) as reply:
                    await reply.read()
                    assert reply.status == 200
        await asyncio.gather(*(one(i) for i in range(total)))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    receiver = multiprocessing.Process(target=_receiver, args=(sock,), daemon=True)
    receiver.start()
    urls = [f"http://127.0.0.1:{port}/{name}" for name in ("calixa", "callexa", "skalin")]
    clients: dict[str, Callable[[list[str], int, int], Awaitable[None]]] = {
        "httpx": with_httpx, "aiohttp": with_aiohttp}
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    try:
        for _ in range(args.rounds):
            for name, run in clients.items():
                start, cpu = time.perf_counter(), _cpu()
                asyncio.run(run(urls, args.requests, args.concurrency))
                wall, used = time.perf_counter() - start, _cpu() - cpu
                rates[name].append((args.requests / wall, args.requests / used))
    finally:
        receiver.terminate()
    print(f"{args.requests:,} POSTs, {args.concurrency} at a time, keep-alive, median of "
          f"{args.rounds} interleaved rounds (receiver in its own process)")
    for name, runs in rates.items():
        per_s = statistics.median(r for r, _ in runs)
        per_cpu = statistics.median(c for _, c in runs)
        print(f"  {name:8s} {per_s:9,.0f} requests/s  {per_cpu:9,.0f} requests per CPU second")
    ratio = statistics.median(a for a, _ in rates["aiohttp"]) / statistics.median(h for h, _ in rates["httpx"])
    print(f"  aiohttp / httpx {ratio:8.1f}x")


if __name__ == "__main__":
    main()
