"""Load benchmark of `mcpbot run`, the Telegram front end: 200 users write to the bot at once through the fake
Bot API server, each sending its next message only when the answer to the previous one arrived (a closed loop
per user). Prints turns per second, reply latency (push to the answer's sendMessage), the bot's CPU per turn and
its peak memory, for an instant model and for a 1-second model with LLM_MAX_CONCURRENT_CALLS at 10 and at 200.

A "bare loop" row first measures the harness itself: a minimal client (httpx, in a subprocess like the bot) that
long-polls getUpdates and answers each update with one sendMessage, optionally after one streamed model call.

Run from the repository root: `python -m bench.bot_bench [--users N] [--messages N] [--database-url URL]`.
"""

import argparse
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import httpx

from tests.conftest import ROOT
from tests.peers.openai_server import Reply, ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI
from tests.postgres import create_database, drop_databases
from tests.telegram.botrun import BotProcess

ANSWER = "ok"
WARMUP_CHAT = 10_000_000  # warm-up users are WARMUP_CHAT + 1, + 2, ...; the measured ones 1 .. users
BENCH_ENV = {
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_USER_REQUESTS": "1000000",
    "RATE_LIMIT_GLOBAL_REQUESTS": "1000000",
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    delay: float  # seconds the model takes to answer; 0: instant
    cap: int | None  # LLM_MAX_CONCURRENT_CALLS; None: the default (10)
    messages: int  # per user


@dataclass(slots=True)
class Drive:
    """What the load generator saw in one closed-loop run."""

    turns: int = 0
    wrong: int = 0  # answers that were not ANSWER (an error note, a rate-limit message)
    lost: int = 0  # messages with no answer when the run timed out
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    methods: Counter[str] = field(default_factory=Counter)  # Bot API calls during the run, by method
    refused: Counter[str] = field(default_factory=Counter)  # "method status" of every non-200 answer


@dataclass(slots=True)
class Row:
    name: str
    users: int
    drive: Drive
    bench_cpu: float  # seconds of CPU this process (fake Bot API, model server, load generator) used
    bot_cpu: float | None = None  # seconds of CPU of the bot process (of the bare client in a bare row)
    children_cpu: float | None = None
    peak_kib: int | None = None  # VmHWM of the bot process
    warm_kib: int | None = None  # its VmHWM after start-up and warm-up, before the measured run
    children_peak_kib: int | None = None  # sum of its child processes' VmHWM
    children: int = 0
    log_problems: Counter[str] = field(default_factory=Counter)
    server_errors: Counter[str] = field(default_factory=Counter)  # logged by the fake servers during the row


class ServerErrors(logging.Handler):
    """Counts what the fake servers' uvicorn logs as an error (a request cut off mid-body is a ClientDisconnect)
    instead of printing each traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        kind = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else record.getMessage()[:60]
        self.counts[kind] += 1


SERVER_ERRORS = ServerErrors()


# -- the load generator -----------------------------------------------------------------------------------------
def drive(api: FakeBotAPI, chats: list[int], messages: int, timeout: float) -> Drive:
    """Every chat sends `messages` messages, the next one as soon as the bot's sendMessage answered the previous
    one; all chats at once. Answers are found by reading the server's call list incrementally."""
    result = Drive()
    seen = len(api.calls)
    left = dict.fromkeys(chats, messages)
    pushed_at: dict[int, float] = {}
    started = time.monotonic()
    last_answer = started
    for chat in chats:
        pushed_at[chat] = time.monotonic()
        api.push_message(chat, f"message 1 of {messages}")
    deadline = started + timeout
    while pushed_at:

        def more(seen: int = seen) -> bool:
            return len(api.calls) > seen

        try:
            api.wait_until(more, max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            break
        calls = api.calls
        new, seen = calls[seen:], len(calls)
        for call in new:
            result.methods[call.method] += 1
            if call.status != 200:
                result.refused[f"{call.method} {call.status}"] += 1
                continue
            if call.method != "sendMessage":
                continue
            chat_id = call.params.get("chat_id")
            if not isinstance(chat_id, int) or chat_id not in pushed_at:
                continue
            result.latencies.append(call.at - pushed_at.pop(chat_id))
            last_answer = max(last_answer, call.at)
            if call.params.get("text") != ANSWER:
                result.wrong += 1
            left[chat_id] -= 1
            if left[chat_id]:
                pushed_at[chat_id] = time.monotonic()
                api.push_message(chat_id, f"message {messages - left[chat_id] + 1} of {messages}")
    result.turns = len(result.latencies)
    result.lost = sum(left.values())  # unanswered, pushed or not yet
    result.wall = last_answer - started
    return result


# -- /proc ------------------------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_kib(pid: int) -> int:
    """VmHWM (peak resident set) of one process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


# -- the rows ---------------------------------------------------------------------------------------------------
def set_model(model: ScriptedModelServer, delay: float) -> None:
    model.record = False
    model.always(Reply(text=ANSWER, chunks=1, usage=(1, 1), delay=delay))


def warm_up(api: FakeBotAPI, model: ScriptedModelServer, users: int) -> None:
    set_model(model, 0.0)
    warm = drive(api, [WARMUP_CHAT + index for index in range(1, users + 1)], 2, timeout=60)
    if warm.lost:
        raise RuntimeError(f"warm-up: {warm.lost} of {users * 2} messages got no answer")


def bot_row(
    scenario: Scenario,
    api: FakeBotAPI,
    model: ScriptedModelServer,
    users: int,
    options: argparse.Namespace,
    database_url: str | None,
) -> Row:
    env = dict(BENCH_ENV)
    if scenario.cap is not None:
        env["LLM_MAX_CONCURRENT_CALLS"] = str(scenario.cap)
    with tempfile.TemporaryDirectory(prefix="bot_bench_") as name:
        folder = Path(name)
        (folder / "data").mkdir()
        if options.with_servers:  # the shipped file as users run it: from a folder that is not the repository
            env |= {"MCP_SERVERS_CONFIG": str(ROOT / "mcp_servers.json"), "DATA_DIR": str(folder / "data")}
        bot = BotProcess(api, model, folder, database_url=database_url, env=env, cwd=folder)
        with bot.start():
            assert bot.process is not None
            pid = bot.process.pid
            warm_up(api, model, options.warmup_users)
            set_model(model, scenario.delay)
            warm_kib = peak_kib(pid)
            children = descendants(pid)
            cpu_before = cpu_seconds(pid), sum(cpu_seconds(child) for child in children)
            bench_before = time.process_time()
            measured = drive(api, list(range(1, users + 1)), scenario.messages, timeout=options.timeout)
            bench_cpu = time.process_time() - bench_before
            children = descendants(pid)
            row = Row(scenario.name, users, measured, bench_cpu)
            row.bot_cpu = cpu_seconds(pid) - cpu_before[0]
            row.children_cpu = sum(cpu_seconds(child) for child in children) - cpu_before[1]
            row.peak_kib = peak_kib(pid)
            row.warm_kib = warm_kib
            row.children_peak_kib = sum(peak_kib(child) for child in children)
            row.children = len(children)
            set_model(model, 0.0)  # whatever is still waiting answers at once
            code = bot.stop()
            if code != 0:
                row.log_problems[f"exit status {code}"] += 1
        for event in bot.log_events():
            if event.get("level") in ("warning", "error", "critical"):
                row.log_problems[f"{event.get('level')} {event.get('event')}"] += 1
    return row


def bare_row(api: FakeBotAPI, model: ScriptedModelServer, users: int, messages: int, with_model: bool) -> Row:
    set_model(model, 0.0)
    command = [sys.executable, "-m", "bench.bot_bench", "--bare-client", f"{api.base_url}{api.token}"]
    if with_model:
        command += ["--model-url", model.base_url]
    polls = api.waiting_polls
    client = subprocess.Popen(command, cwd=ROOT)
    try:
        api.wait_until(lambda: api.waiting_polls > polls, timeout=30)
        warm = drive(api, [WARMUP_CHAT + index for index in range(1, 21)], 2, timeout=30)
        if warm.lost:
            raise RuntimeError("the bare loop does not answer")
        bench_before, client_before = time.process_time(), cpu_seconds(client.pid)
        measured = drive(api, list(range(1, users + 1)), messages, timeout=120)
        bench_cpu = time.process_time() - bench_before
        name = "bare loop + model call" if with_model else "bare loop"
        client_cpu = cpu_seconds(client.pid) - client_before
        return Row(name, users, measured, bench_cpu, bot_cpu=client_cpu, peak_kib=peak_kib(client.pid))
    finally:
        client.send_signal(signal.SIGTERM)
        client.wait(10)


# -- the bare client (a subprocess) -----------------------------------------------------------------------------
async def bare_client(api_url: str, model_url: str | None) -> None:
    """getUpdates in a loop; each update answered with sendMessage ANSWER (after one streamed model call)."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client, anyio.create_task_group() as tasks:

        async def answer(chat_id: int, text: str) -> None:
            if model_url is not None:
                body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": text}]}
                async with client.stream("POST", f"{model_url}/chat/completions", json=body) as response:
                    async for _line in response.aiter_lines():
                        pass
            await client.post(f"{api_url}/sendMessage", json={"chat_id": chat_id, "text": ANSWER})

        offset = 0
        while True:
            response = await client.post(f"{api_url}/getUpdates", json={"offset": offset, "timeout": 30})
            for update in response.json()["result"]:
                offset = update["update_id"] + 1
                message = update["message"]
                tasks.start_soon(answer, message["chat"]["id"], message["text"])


# -- output -----------------------------------------------------------------------------------------------------
def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def print_row(row: Row) -> None:
    measured = row.drive
    ordered = sorted(measured.latencies) or [0.0]
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    turns = max(measured.turns, 1)
    bot_ms = "-" if row.bot_cpu is None else f"{row.bot_cpu / turns * 1000:.1f}"
    children = f"{mib(row.children_peak_kib)} ({row.children})" if row.children else "-"
    print(
        f"{row.name:<38} {row.users:>5} {measured.turns:>5} {measured.wall:>6.1f} "
        f"{measured.turns / max(measured.wall, 1e-9):>7.1f} {statistics.median(ordered) * 1000:>7.0f} "
        f"{p95 * 1000:>7.0f} {ordered[-1] * 1000:>7.0f} {bot_ms:>7} {row.bench_cpu / turns * 1000:>7.1f} "
        f"{mib(row.peak_kib):>5} {children:>9}",
        flush=True,
    )


def print_notes(rows: list[Row]) -> None:
    print("\nper row: Bot API calls per turn by method; anything refused, wrong, lost or logged")
    for row in rows:
        measured = row.drive
        turns = max(measured.turns, 1)
        methods = ", ".join(f"{method} {count / turns:.2f}" for method, count in sorted(measured.methods.items()))
        problems = [f"{measured.lost} lost"] if measured.lost else []
        problems += [f"{measured.wrong} wrong answers"] if measured.wrong else []
        problems += [f"refused: {dict(measured.refused)}"] if measured.refused else []
        problems += [f"bot log: {dict(row.log_problems)}"] if row.log_problems else []
        problems += [f"fake servers logged: {dict(row.server_errors)}"] if row.server_errors else []
        if row.warm_kib is not None:
            problems.insert(0, f"peak before the run {mib(row.warm_kib)} MiB")
        if row.children_cpu:
            problems.append(f"child processes' CPU {row.children_cpu / turns * 1000:.1f} ms/turn")
        print(f"{row.name:<38} {methods}; {'; '.join(problems) or 'nothing refused, wrong, lost or logged'}")


def main(options: argparse.Namespace) -> None:
    scenarios = [
        Scenario("instant model, cap 10", 0.0, None, options.messages),
        Scenario("1 s model, cap 10", 1.0, 10, options.slow_messages),
        Scenario("1 s model, cap 200", 1.0, 200, options.slow_messages),
    ]
    users = options.users
    header = (
        f"{'row':<38} {'users':>5} {'turns':>5} {'wall s':>6} {'turns/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'max ms':>7} {'bot CPU':>7} {'harness':>7} {'peak':>5} {'children':>9}"
    )
    print(f"mcpbot run against the fake Bot API, {users} users at once, closed loop per user")
    database = options.database_url or "SQLite"
    print(f"(CPU in ms per turn; peak = VmHWM in MiB; {os.cpu_count()} CPUs; database: {database})")
    print(header, flush=True)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(SERVER_ERRORS)
    uvicorn_log.propagate = False
    rows: list[Row] = []

    def add(make: Callable[[], Row]) -> Row:
        before = Counter(SERVER_ERRORS.counts)
        row = make()
        row.server_errors = SERVER_ERRORS.counts - before
        rows.append(row)
        return row

    with FakeBotAPI() as api, ScriptedModelServer() as model:
        if not options.no_bare:
            for with_model in (False, True):
                print_row(add(partial(bare_row, api, model, users, options.messages, with_model)))
        for scenario in scenarios:
            if options.only and options.only not in scenario.name:
                continue
            database_url = None
            if options.database_url:
                database_url = anyio.run(create_database, options.database_url, "mcpbot_botbench")
            try:
                row = add(partial(bot_row, scenario, api, model, users, options, database_url))
            finally:
                if database_url:
                    anyio.run(drop_databases, options.database_url, [database_url])
            row.name = f"bot: {scenario.name} ({scenario.messages}/user)"
            print_row(row)
    print_notes(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--messages", type=int, default=5, help="per user with the instant model (default 5)")
    parser.add_argument("--slow-messages", type=int, default=1, help="per user with the 1-second model (default 1)")
    parser.add_argument("--warmup-users", type=int, default=20, help="users sending 2 untimed messages first")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a row may take before it gives up")
    parser.add_argument("--database-url", help="PostgreSQL server to use (a throw-away database) instead of SQLite")
    parser.add_argument("--with-servers", action="store_true", help="our mcp_servers.json instead of no servers")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-loop rows")
    parser.add_argument("--only", help="run only the bot scenarios whose name contains this")
    parser.add_argument("--bare-client", metavar="API_URL", help=argparse.SUPPRESS)
    parser.add_argument("--model-url", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.bare_client:
        anyio.run(bare_client, arguments.bare_client, arguments.model_url)
    else:
        main(arguments)
