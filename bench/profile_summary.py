"""Summarize a py-spy `--format raw` profile (collapsed stacks: `frame;frame;... count` per line).

    python bench/profile_summary.py bench-results/profile-post_customers.txt [--seconds 10 --rate 100]

Recorded by bench/run.py with `--threads` (the first frame names the thread) and, by default,
`--native` (C frames too: uvloop, asyncpg's protocol, libc). Only the main thread is counted: it runs
the event loop and every request; the other threads (uvloop's executor, libuv's pool) sit idle.

- own time: samples whose innermost frame is the function. A C frame is folded into the nearest
  Python frame that called it ("Connection._do_execute (asyncpg/connection.py)"), except a libc
  call, which is kept as such with its Python caller ("libc write <- Connection._do_execute"): in
  this service that is where the time of a round trip to PostgreSQL or of sending a response goes.
- cumulative time: samples with the Python function anywhere on the stack (once per sample).
- busy_pct: main-thread samples / (seconds x rate); with --native py-spy records the thread even
  while it waits in epoll, which shows up as `libc epoll_pwait`.
Line numbers are dropped, so a function is one row.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from typing import Any

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<id>\w+)\)(?::\s*(?P<name>.*))?$")


def _parse_frame(frame: str) -> tuple[str, str]:
    found = _FRAME.match(frame.strip())
    if not found:
        return frame.strip(), ""
    return found.group("function"), found.group("file")


def _short_file(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "lib/python3.12/", "lib/python3.13/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _is_python(path: str) -> bool:
    return path.endswith(".py") or path in ("canopy-svc",) or path.endswith("/canopy-svc")


def _is_libc(path: str) -> bool:
    return "libc.so" in path or "libpthread" in path


def package_of(path: str) -> str:
    short = _short_file(path)
    if "canopy_svc/" in short:
        module = short.split("canopy_svc/", 1)[1].removesuffix(".py").replace("/", ".")
        return f"canopy_svc.{module.split('.')[0]}"
    if _is_libc(path):
        return "libc (system calls)"
    head = short.split("/", 1)[0].removesuffix(".py")
    return head or "?"


def summarize_raw(text: str, *, seconds: float, rate: int, top: int = 20, thread: str = "MainThread") -> dict[str, Any]:
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    packages_own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        found = _THREAD.match(frames[0])
        if found:
            name = found.group("name") or found.group("id")
            threads[name] += count
            frames = frames[1:]
            if thread and name != thread:
                continue
        parsed = [_parse_frame(f) for f in frames]
        if not parsed:
            continue
        total += count
        python = [(f"{fn} ({_short_file(path)})", path) for fn, path in parsed if _is_python(path)]
        leaf_fn, leaf_path = parsed[-1]
        caller = python[-1][0] if python else "?"
        if _is_python(leaf_path):
            key, key_path = f"{leaf_fn} ({_short_file(leaf_path)})", leaf_path
        elif _is_libc(leaf_path):
            symbol = leaf_fn if not leaf_fn.startswith("0x") else "?"
            key, key_path = f"libc {symbol} <- {caller}", leaf_path
        else:
            key, key_path = caller, python[-1][1] if python else leaf_path
        own[key] += count
        packages_own[package_of(key_path)] += count
        for name in {n for n, _ in python}:
            cumulative[name] += count

    def rows(counter: Counter[str], n: int) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": c, "share_pct": round(100.0 * c / max(total, 1), 1)}
            for name, c in counter.most_common(n)
        ]

    syscalls = Counter({k: v for k, v in own.items() if k.startswith("libc ")})
    return {
        "thread": thread,
        "samples": total,
        "busy_pct": round(100.0 * total / max(seconds * rate, 1), 1),
        "threads_seen": dict(threads),
        "top_own": rows(own, top),
        "top_cumulative": rows(cumulative, top + 10),
        "own_by_package": [
            {"package": p, "share_pct": round(100.0 * c / max(total, 1), 1)} for p, c in packages_own.most_common(15)
        ],
        "libc_calls": rows(syscalls, 12),
        "libc_share_pct": round(100.0 * sum(syscalls.values()) / max(total, 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw_file")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--thread", default="MainThread", help="thread name to count ('' for all)")
    args = parser.parse_args()
    with open(args.raw_file) as handle:
        summary = summarize_raw(handle.read(), seconds=args.seconds, rate=args.rate, top=args.top, thread=args.thread)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
