"""Graphs Slate's tests run on the real LangGraph server, beside the real shot planner
(k8s/langgraph/shot_planner.py, copied next to this file by tests/src/langgraph_peer.rs).

- ``ask``: asks a person twice (two interrupts in a row) and ends with both answers, as
  Slate sent them, so a test sees exactly what was resumed with.
- ``fail``: raises, with a message the stage must show.
- ``slow``: ``steps`` steps of ``delay`` seconds each (asyncio.sleep: the server refuses
  blocking calls), each announced as custom progress; for cancelling a run that is busy.
"""

import asyncio
from typing import Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class AskState(TypedDict, total=False):
    topic: str
    answers: list


def first(state: AskState) -> dict:
    answer = interrupt({"question": f"Is the outline for {state.get('topic', '?')} right?", "step": 1})
    return {"answers": [answer]}


def second(state: AskState) -> dict:
    answer = interrupt({"question": "And the final wording?", "step": 2, "so_far": state["answers"]})
    return {"answers": state["answers"] + [answer]}


ask_builder = StateGraph(AskState)
ask_builder.add_node("first", first)
ask_builder.add_node("second", second)
ask_builder.add_edge(START, "first")
ask_builder.add_edge("first", "second")
ask_builder.add_edge("second", END)
ask = ask_builder.compile()


class FailState(TypedDict, total=False):
    story: str


def explode(state: FailState) -> dict:
    get_stream_writer()({"progress": 0.5, "message": "about to fail"})
    raise ValueError(f"the budget allows 3 shots, the story needs 12 ({state.get('story', '')[:20]})")


fail_builder = StateGraph(FailState)
fail_builder.add_node("explode", explode)
fail_builder.add_edge(START, "explode")
fail_builder.add_edge("explode", END)
fail = fail_builder.compile()


class SlowState(TypedDict, total=False):
    steps: int
    delay: float
    done: int


async def work(state: SlowState) -> dict:
    writer = get_stream_writer()
    steps = int(state.get("steps") or 60)
    delay = float(state.get("delay") or 0.5)
    for n in range(1, steps + 1):
        await asyncio.sleep(delay)
        writer({"progress": n / steps, "message": f"step {n} of {steps}"})
    return {"done": steps}


slow_builder = StateGraph(SlowState)
slow_builder.add_node("work", work)
slow_builder.add_edge(START, "work")
slow_builder.add_edge("work", END)
slow = slow_builder.compile()
