"""Named phases reach the listeners of their own context, nested, with progress and an end."""

from __future__ import annotations

import threading

from cnnkit.phases import listen, phase


def test_listener_hears_start_progress_and_end_with_depth():
    events = []
    with listen(events.append):
        with phase("decoding", total=3, unit="images") as step:
            step()
            step(2)
            with phase("inner"):
                pass
    kinds = [(e.name, e.kind, e.depth) for e in events]
    assert kinds[0] == ("decoding", "start", 0)
    assert ("inner", "start", 1) in kinds and ("inner", "end", 1) in kinds
    assert kinds[-1] == ("decoding", "end", 0)
    last_advance = [e for e in events if e.name == "decoding" and e.kind == "advance"][-1]
    assert last_advance.done == 3 and last_advance.fraction == 1.0


def test_no_listener_outside_the_block_and_other_threads_are_not_heard():
    events = []

    def other():
        with phase("elsewhere", total=1) as step:
            step()

    with listen(events.append):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    with phase("after"):
        pass
    assert events == []


def test_a_failing_listener_does_not_stop_the_work():
    def bad(event):
        raise RuntimeError("watcher broke")

    with listen(bad):
        with phase("work", total=1) as step:
            step()
    # reached: the work went on
