"""A TCP proxy that limits server-to-client bandwidth, for download benchmarks at network speeds.

Loopback on a 2-core VM moves about 1 GB/s with almost no CPU left over, which makes any per-byte
work (sha256, fsync) look expensive relative to a transfer no real network delivers. This proxy
puts a token bucket on the response direction so the same comparison can be made at, say,
100 MB/s (a fast 1 Gbit/s link to a CDN).

Run:  python benchmarks/throttle_proxy.py --port 9001 --target 127.0.0.1:9000 --rate-mb 100
"""

from __future__ import annotations

import argparse
import asyncio
import time

CHUNK = 64 * 1024


class Bucket:
    """Token bucket shared by all connections (the link is the bottleneck, not one socket)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.allowance = 0.0
        self.last = time.monotonic()

    async def take(self, n: int) -> None:
        while True:
            now = time.monotonic()
            self.allowance = min(self.rate * 0.05, self.allowance + (now - self.last) * self.rate)
            self.last = now
            if self.allowance >= n:
                self.allowance -= n
                return
            await asyncio.sleep((n - self.allowance) / self.rate)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bucket: Bucket | None) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            if bucket is not None:
                await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="host:port of the real server")
    parser.add_argument("--rate-mb", type=float, required=True, help="MB/s from server to client")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    bucket = Bucket(args.rate_mb * 1e6)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(client_r, server_w, None), pipe(server_r, client_w, bucket))

    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
