"""``make run``'s stdout: records print whole while other threads print too, and EMF lines drop."""

from __future__ import annotations

import io
import threading

from dev.stack.run import _DropEmfLines


def test_a_thread_printing_between_another_threads_two_writes_does_not_join_its_line() -> None:
    """``print`` writes a message and then its newline. Here a record block's thread stops
    between the two while another thread prints a whole line and an EMF line: the block still
    comes out in one piece, the other line on its own, the EMF line not at all."""
    sink = io.StringIO()
    out = _DropEmfLines(sink)  # type: ignore[arg-type]
    block_written, other_done = threading.Event(), threading.Event()

    def record() -> None:
        out.write("=== AppointmentCreate  A1 ===\n  location        L1\n  status          booked")
        block_written.set()
        assert other_done.wait(10)
        out.write("\n")
        out.flush()

    def other() -> None:
        assert block_written.wait(10)
        print('{"_aws": {"Timestamp": 1}}', file=out, flush=True)  # type: ignore[arg-type]
        print("<<< reconcile: 0 enqueued", file=out, flush=True)  # type: ignore[arg-type]
        other_done.set()

    threads = [threading.Thread(target=record), threading.Thread(target=other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    lines = sink.getvalue().splitlines()
    assert sorted(lines) == sorted(
        [
            "=== AppointmentCreate  A1 ===",
            "  location        L1",
            "  status          booked",
            "<<< reconcile: 0 enqueued",
        ]
    )
    header = lines.index("=== AppointmentCreate  A1 ===")
    assert lines[header + 1 : header + 3] == ["  location        L1", "  status          booked"]
