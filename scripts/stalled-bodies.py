#!/usr/bin/env python3
"""Load program of scripts/stalled-bodies.sh (standard library only).

Opens STALLED connections spread over source addresses 127.0.0.2.. (PER_SOURCE each); each
sends the headers of a POST with `Content-Length: 1000` and one byte of body, `{`, then stalls
and waits for whatever the server does. Meanwhile a probe opens a new connection from 127.0.0.1
every PROBE_MS and asks `GET /healthz`. After DURATION_SECS it prints what the probes saw and
what became of the stalled connections, as human lines and one `STALLED_RESULT key=value ...`
line. Traffic goes to 127.0.0.0/8 only.
"""

import argparse
import asyncio
import collections
import time

STALLED_REQUEST = (
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: surge\r\n"
    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
)
PROBE_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: surge\r\nConnection: close\r\n\r\n"


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stalled", type=int, default=2000)
    parser.add_argument("--per-source", type=int, default=200)
    parser.add_argument("--duration-secs", type=float, default=15.0)
    parser.add_argument("--probe-ms", type=int, default=100)
    parser.add_argument("--probe-timeout-secs", type=float, default=2.0)
    return parser.parse_args()


def source_of(index, per_source):
    """127.0.0.2 for the first `per_source` connections, then .3, and so on."""
    return "127.0.0.%d" % (2 + index // per_source)


async def stalled(index, args, started, outcomes):
    """One stalled connection: what it ended as, when (seconds since the run started) and, for
    an answer, (seconds from opening to the answer, seconds from opening to the server's close)."""
    phase = "connecting_at_end"
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", args.port, local_addr=(source_of(index, args.per_source), 0)
        )
    except OSError as error:
        outcomes.append(("connect_failed:%s" % error.__class__.__name__, None, None))
        return
    except asyncio.CancelledError:
        outcomes.append((phase, None, None))
        raise
    opened = time.monotonic()
    try:
        phase = "unanswered_at_end"
        writer.write(STALLED_REQUEST)
        await writer.drain()
        line = await reader.readline()
        if not line:
            outcomes.append(("closed_unanswered", time.monotonic() - started, None))
            return
        status = line.split(b" ")[1].decode()
        answered = time.monotonic()
        phase = "answered_%s_open_at_end" % status
        # The rest of the answer, then the server's close.
        while await reader.read(4096):
            pass
        closed = time.monotonic() - opened
        outcomes.append((status, answered - started, (answered - opened, closed)))
    except (OSError, asyncio.IncompleteReadError) as error:
        outcomes.append(("error:%s" % error.__class__.__name__, time.monotonic() - started, None))
    except asyncio.CancelledError:
        outcomes.append((phase, None, None))
        raise
    finally:
        writer.close()


async def probe(args):
    """One /healthz on a new connection from 127.0.0.1: (ok, seconds)."""
    began = time.monotonic()
    try:
        async with asyncio.timeout(args.probe_timeout_secs):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", args.port, local_addr=("127.0.0.1", 0)
            )
            try:
                writer.write(PROBE_REQUEST)
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
        return line.startswith(b"HTTP/1.1 200"), time.monotonic() - began
    except (OSError, TimeoutError):
        return False, time.monotonic() - began


async def probes(args, deadline, results):
    tasks = []
    while time.monotonic() < deadline:
        tasks.append(asyncio.create_task(probe(args)))
        await asyncio.sleep(args.probe_ms / 1000)
    results.extend(await asyncio.gather(*tasks))


def percentile(sorted_values, fraction):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def main():
    args = parse_args()
    started = time.monotonic()
    deadline = started + args.duration_secs
    outcomes, probe_results = [], []
    flood = [
        asyncio.create_task(stalled(i, args, started, outcomes)) for i in range(args.stalled)
    ]
    await probes(args, deadline, probe_results)
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    for task in flood:
        task.cancel()
    await asyncio.gather(*flood, return_exceptions=True)

    ok_ms = sorted(secs * 1000 for ok, secs in probe_results if ok)
    kinds = collections.Counter(kind for kind, _, _ in outcomes)
    timed_out = [(at, times) for kind, at, times in outcomes if kind == "408"]
    figures = {
        "probes": len(probe_results),
        "probes_ok": len(ok_ms),
        "probes_failed": len(probe_results) - len(ok_ms),
        "p50_ms": "%.1f" % percentile(ok_ms, 0.50),
        "p99_ms": "%.1f" % percentile(ok_ms, 0.99),
        "max_ms": "%.1f" % (ok_ms[-1] if ok_ms else float("nan")),
        "stalled": len(outcomes),
        "got_408": len(timed_out),
        "unanswered": kinds.get("unanswered_at_end", 0),
    }
    print(
        "probes: sent {probes}, answered 200 {probes_ok}, failed {probes_failed}; latency of "
        "the 200s p50 {p50_ms} ms, p99 {p99_ms} ms, max {max_ms} ms".format(**figures)
    )
    print("stalled connections: %d: %s" % (len(outcomes), dict(sorted(kinds.items()))))
    if timed_out:
        at = sorted(a for a, _ in timed_out)
        after = sorted(t[0] for _, t in timed_out)
        closed = sorted(t[1] for _, t in timed_out)
        print(
            "408s: %d, %.1f s to %.1f s into the run, %.1f s to %.1f s after their connection "
            "opened; closed by the server %.1f s to %.1f s after opening"
            % (len(at), at[0], at[-1], after[0], after[-1], closed[0], closed[-1])
        )
    print("STALLED_RESULT " + " ".join("%s=%s" % item for item in figures.items()))

if __name__ == "__main__":
    asyncio.run(main())
