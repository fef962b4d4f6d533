"""What the agent says in words, in one place: to the model (why a call did not run and what to
do next, a nudge after an empty reply) and to people (a run's failure line, why nothing ran).
The adapters word everything else they show (adapters/texts.py).
"""

from __future__ import annotations

# ---- to the model: read as a tool's result, so it can correct itself or tell the user
NO_SUCH_TOOL = "error: there is no tool named {name!r}. Available tools: {tools}"
CALL_REFUSED = "error: {error}"
NOT_RUN = "not run: {why}"
NOT_RUN_DECIDED = (
    "not run: the action was {status} by {by} ({why}). Do not retry it; tell the user and ask how to proceed."
)
NO_DECISION = "no decision before the timeout"
TOOL_FAILED = "error: {tool} failed: {kind}: {error}"
EMPTY_REPLY_NUDGE = "Your last reply was empty. Answer the question, or call a tool."

# ---- to people: what a thread or the console shows
NOT_RUN_SHOWN = "not run: {status} by {by} ({why})"
EMPTY_TWICE = "the model returned an empty reply twice; try again or use another model (ORCHESTRATOR_MODEL)"
TOO_MANY_TURNS = (
    "stopped after {turns} model turns without a final answer "
    "(the model kept calling tools); ask a narrower question or raise ORCHESTRATOR_MAX_ITERATIONS"
)
UNAVAILABLE = "{detail}; ask again in a moment"
DATABASE_REFUSED = "the database refused to save this run ({kind}); ask again in a moment"
INTERNAL_ERROR = "internal error ({kind}{detail}); the bot's log has the details"
STOPPED_BEFORE_DECISION = "the bot was stopped before a decision"

# What the model reads about the files attached to a message.
ATTACHED = "[attached: {name} ({kind}, {size})]"
ATTACHED_SEEN = "[attached: {name} ({kind}, {size}); what the vision model {model} saw in it:]\n{seen}"
ATTACHED_UNSEEN = "[attached: {name} ({kind}, {size}); it was not looked at: {why}]"
NO_VISION_MODEL = "no vision model is configured (ORCHESTRATOR_VISION_MODEL)"
VISION_FAILED = "the vision model failed: {error}"
NOT_FETCHED = "the chat did not give its bytes (larger than the 10 MiB cap, or unreachable)"
SAW_NOTHING = "(the vision model described nothing)"
VISION_PROMPT = (
    "Describe this image for a system administrator who cannot see it: what it shows (a terminal, "
    "a log, an error dialog, a graph, a dashboard), then every error message, number, host name, "
    "path and time it shows, copied exactly. For a graph, the metric, the time range and what "
    "stands out. No advice, only what is there. The person's message was: {question}"
)
