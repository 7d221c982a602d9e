"""The shot planner: a paragraph of story in, a list of shots out.

Input: ``story`` (text), ``shots`` (optional: the most shots to make), ``style`` (optional:
words added to every prompt), ``review`` (optional: when true, a person approves, edits
or rejects the plan before it is final). Output: ``{"shots": [{"shot": "sh010", "prompt":
"...", "seconds": N}, ...]}``.

It is deterministic: sentences become shots (neighbouring sentences share a shot when
there are more sentences than ``shots`` allows), prompts are built from the sentence and
the style, and a shot lasts about as long as its sentence takes to read aloud. No model
and no network: the same story always gives the same plan, which the tests rely on.

The review is a LangGraph interrupt. Its question is ``{"question", "shots", "problem"?}``;
the answer (what Slate sends as ``Command(resume=...)``) is one of
``{"action": "approve"}``, ``{"action": "edit", "values": {"shots": [...]}}`` (shown again
for approval, or asked again naming the problem when the shots are not a plan) and
``{"action": "reject", "reason": "..."}`` (the run fails with the reason).
"""

from __future__ import annotations

import re
from typing import Any, Optional, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

# A shot lasts between these many seconds; a sentence is read at about this pace.
MIN_SECONDS = 2
MAX_SECONDS = 8
WORDS_PER_SECOND = 2.5
# The most shots a plan may have, whatever the input asks (Slate fans out over them).
MOST_SHOTS = 200
DEFAULT_STYLE = "cinematic film still"


class PlanRejected(ValueError):
    """A person rejected the plan; the message is their reason. A ValueError, so that
    LangGraph passes the message on (it hides those of other exception classes)."""


class State(TypedDict, total=False):
    story: str
    # In the input: the most shots to make (a number). In the output: the plan (a list).
    shots: Any
    style: str
    review: bool
    # The answer of the last review that asked again, for the next question.
    problem: Optional[str]
    approved: bool


def sentences(story: str) -> list[str]:
    """The story's sentences, in order: split after . ! ? (and line breaks), trimmed."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", story.strip())
    return [" ".join(p.split()) for p in parts if p and p.strip(" .!?")]


def group(items: list[str], most: Optional[int]) -> list[str]:
    """``items`` in at most ``most`` contiguous groups of nearly equal size, joined."""
    if not most or most >= len(items):
        return items
    groups = []
    base, extra = divmod(len(items), most)
    start = 0
    for n in range(most):
        size = base + (1 if n < extra else 0)
        groups.append(" ".join(items[start : start + size]))
        start += size
    return groups


def seconds_for(text: str) -> int:
    words = len(text.split())
    return max(MIN_SECONDS, min(MAX_SECONDS, round(words / WORDS_PER_SECOND)))


def prompt_for(text: str, style: str) -> str:
    return f"{text.rstrip('.!? ')}, {style}"


def plan_shots(story: str, most: Optional[int] = None, style: Optional[str] = None) -> list[dict]:
    """The plan for ``story``: one shot per sentence (or group of sentences)."""
    if not isinstance(story, str) or not story.strip():
        raise ValueError("the story is empty: give a paragraph to plan")
    if most is not None and (not isinstance(most, int) or isinstance(most, bool) or most < 1):
        raise ValueError(f"shots must be a whole number of at least 1, not {most!r}")
    style = (style or "").strip() or DEFAULT_STYLE
    texts = group(sentences(story), min(most or MOST_SHOTS, MOST_SHOTS))
    return [
        {"shot": f"sh{(n + 1) * 10:03d}", "prompt": prompt_for(text, style), "seconds": seconds_for(text)}
        for n, text in enumerate(texts)
    ]


def edited_plan(values: Any) -> tuple[Optional[list[dict]], Optional[str]]:
    """The shots of an edit, or why they are not a plan."""
    if not isinstance(values, dict) or not isinstance(values.get("shots"), list):
        return None, 'an edit gives the values as {"shots": [...]}'
    shots = values["shots"]
    if not shots:
        return None, "a plan needs at least one shot"
    if len(shots) > MOST_SHOTS:
        return None, f"a plan has at most {MOST_SHOTS} shots, not {len(shots)}"
    out = []
    for n, shot in enumerate(shots, start=1):
        if not isinstance(shot, dict):
            return None, f"shot {n} is not an object"
        name, prompt, secs = shot.get("shot"), shot.get("prompt"), shot.get("seconds")
        if not isinstance(name, str) or not name.strip():
            return None, f'shot {n} has no name ("shot")'
        if not isinstance(prompt, str) or not prompt.strip():
            return None, f"shot {name} has no prompt"
        if isinstance(secs, bool) or not isinstance(secs, (int, float)) or not 0 < secs <= 600:
            return None, f"shot {name}: seconds must be a number above 0 and at most 600"
        out.append({"shot": name.strip(), "prompt": prompt.strip(), "seconds": secs})
    return out, None


def plan(state: State) -> dict:
    writer = get_stream_writer()
    most = state.get("shots")
    if isinstance(most, list):  # a plan already (a run resumed after an edit)
        return {}
    writer({"progress": 0.1, "message": "Splitting the story into shots"})
    shots = plan_shots(state.get("story", ""), most, state.get("style"))
    for n, shot in enumerate(shots, start=1):
        writer({"progress": 0.1 + 0.8 * n / len(shots), "message": f"Planned {shot['shot']} ({n} of {len(shots)})"})
    return {"shots": shots, "approved": not state.get("review", False)}


def review(state: State) -> dict:
    question = {"question": "Review the shot plan: approve it, edit the shots, or reject it.", "shots": state["shots"]}
    if state.get("problem"):
        question["problem"] = state["problem"]
    answer = interrupt(question)
    action = answer.get("action") if isinstance(answer, dict) else None
    if action == "approve":
        return {"approved": True, "problem": None}
    if action == "reject":
        reason = str(answer.get("reason") or "").strip() or "no reason given"
        raise PlanRejected(f"the shot plan was rejected: {reason}")
    if action == "edit":
        shots, problem = edited_plan(answer.get("values"))
        if problem:
            return {"problem": f"The edit was not used: {problem}."}
        return {"shots": shots, "problem": None}
    return {"problem": f"The answer {answer!r} is not one of approve, edit or reject."}


def done(state: State) -> dict:
    get_stream_writer()({"progress": 1.0, "message": f"{len(state['shots'])} shot{'' if len(state['shots']) == 1 else 's'} planned"})
    return {}


class Input(TypedDict, total=False):
    story: str
    shots: int
    style: str
    review: bool


class Output(TypedDict):
    shots: list


builder = StateGraph(State, input_schema=Input, output_schema=Output)
builder.add_node("plan", plan)
builder.add_node("review", review)
builder.add_node("done", done)
builder.add_edge(START, "plan")
builder.add_conditional_edges("plan", lambda s: "done" if s.get("approved") else "review", ["review", "done"])
builder.add_conditional_edges("review", lambda s: "done" if s.get("approved") else "review", ["review", "done"])
builder.add_edge("done", END)
graph = builder.compile()
