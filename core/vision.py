"""What the model is told about the files attached to a message, and what a vision model saw.

With `ORCHESTRATOR_VISION_MODEL` set, each image (fetched by the adapter, within its cap) goes
to that model through the ollama client's `images`, once, before the main model's first turn;
what it saw becomes a step of the run (a `view_image` call and its result, stored and shown in
the thread like any other) and a note in the person's message, which the main model reads. The
main model never receives the image itself. Without a vision model, or for other files, the
note gives the file's name, type and size, and says it was not looked at.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core import texts
from core.events import Event, InputFile, ToolCall, ToolResult
from core.health.texts import size as human_size
from core.llm import LLM, LLMError

VIEW_IMAGE = "view_image"  # the step's name in the thread and the store (not a tool the model can call)
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # larger images are mentioned, not fetched


@dataclass(frozen=True, slots=True)
class Looked:
    steps: list[Event]  # the view_image calls and results, to store and show
    note: str  # what the main model reads after the person's text


async def look_at(
    files: Sequence[InputFile],
    *,
    run_id: int,
    question: str,
    vision: LLM | None,
    model: str,
    redact: Callable[[str], str],
) -> Looked:
    steps: list[Event] = []
    notes: list[str] = []
    for number, file in enumerate(files, start=1):
        what = {"name": file.name, "kind": file.content_type, "size": human_size(file.size)}
        if not file.is_image:
            notes.append(texts.ATTACHED.format(**what))
            continue
        if vision is None:
            notes.append(texts.ATTACHED_UNSEEN.format(**what, why=texts.NO_VISION_MODEL))
            continue
        if file.data is None:
            notes.append(texts.ATTACHED_UNSEEN.format(**what, why=texts.NOT_FETCHED))
            continue
        call = ToolCall(run_id, f"{run_id}.image{number}", VIEW_IMAGE, {"file": file.name, "model": model})
        message = {
            "role": "user",
            "content": texts.VISION_PROMPT.format(question=redact(question)),
            "images": [base64.b64encode(file.data).decode("ascii")],
        }
        try:
            reply = await vision.chat([message], [])
        except LLMError as exc:
            failed = texts.VISION_FAILED.format(error=exc)
            steps += [call, ToolResult(run_id, call.call_id, VIEW_IMAGE, False, failed)]
            notes.append(texts.ATTACHED_UNSEEN.format(**what, why=failed))
            continue
        seen = redact(reply.content.strip()) or texts.SAW_NOTHING
        steps += [call, ToolResult(run_id, call.call_id, VIEW_IMAGE, True, seen)]
        notes.append(texts.ATTACHED_SEEN.format(**what, model=model, seen=seen))
    return Looked(steps, "\n".join(notes))
