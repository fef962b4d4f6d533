"""Every text of the memory package: prompt sections, tool answers, incident lines.

Kept in one place so the wording the model and the users see can be read and tuned together.
"""

from __future__ import annotations

from typing import Final

# ---- the system prompt section (context provider) ----------------------------------------
GUIDE: Final = (
    "Memory: you keep long-term memories across threads and restarts. When someone states a durable fact "
    "or preference (what a host runs, a port, a rule to follow, how they want answers), call memory_store "
    "with it as one self-contained sentence that names the host, service or person. When asked what you "
    "remember, call memory_recall. When asked to forget something, call memory_forget (memory_recall first "
    "gives the id). Forgetting or replacing a memory someone else wrote asks a person to approve it first. "
    "Do not store secrets (they are refused) or passing states (the current load, a one-off error)."
)
REMEMBERED_HEADER: Final = "What you remember (it may be outdated: check with tools before acting on it):"
REMEMBERED_LINE: Final = "- {text} ({source})"
PRIVATE_ELSEWHERE: Final = "{who} told you this in a direct message: use it, but do not repeat it in a channel"

# ---- sources ------------------------------------------------------------------------------
SOURCE_SHORT: Final = "{who}, {where}, {when}"
SOURCE_LONG: Final = "said by {who} {where}, {when}"
WHERE_DM: Final = "in a direct message on {platform}"
WHERE_CHANNEL: Final = "in channel {channel} on {platform}"
WHERE_PLATFORM: Final = "on {platform}"
WHERE_UNKNOWN: Final = "somewhere unrecorded"
WHO_NAMED: Final = "{name} ({platform} user {user})"
WHO_UNKNOWN: Final = "someone"
WHEN_UNKNOWN: Final = "at an unrecorded time"
SCOPE_SHARED: Final = "shared"
SCOPE_PRIVATE: Final = "private to its author"
AUTHOR_NAMED: Final = "{name} ({author})"
AUTHOR_SYSTEM: Final = "the system (a scheduled check)"
AUTHOR_UNKNOWN: Final = "nobody recorded (stored before authors were kept)"

# ---- tool answers -------------------------------------------------------------------------
STORED: Final = "Remembered ({visibility}): {text}\nid: {id}"
UPDATED: Final = "Updated what I remembered ({visibility}; it replaces a near-identical memory): {text}\nid: {id}"
VISIBLE_SHARED: Final = "shared with everyone who talks to me in channels"
VISIBLE_PRIVATE: Final = "private to you, because you told me in a direct message"
RECALLED_HEADER: Final = "Memories matching {query!r}, best match first:"
RECENT_HEADER: Final = "The most recent memories:"
RECALLED_ITEM: Final = "- id {id}: {text}\n  {kind}, {scope}, written by {author}; {source}"
PRIVATE_IN_CHANNEL: Final = (
    "Memories marked private were told to you in a direct message: do not quote them in this channel; "
    "offer to answer in a direct message instead."
)
NOTHING_RECALLED: Final = "I remember nothing about {query!r}."
NOTHING_AT_ALL: Final = "I remember nothing yet."
FORGOTTEN: Final = "Forgot {count} memory: {items}"
FORGOTTEN_ITEM: Final = "{text!r} (id {id})"
NOTHING_FORGOTTEN_ID: Final = "Nothing forgotten: there is no memory {id!r} that you may change."
NOTHING_FORGOTTEN_QUERY: Final = (
    "Nothing forgotten: no memory you may change is close enough to {query!r}. "
    "Call memory_recall to find it, then memory_forget with its id."
)
FORGET_NEEDS_ONE: Final = "give exactly one of memory_id or query"
FACT_TOO_LONG: Final = "a memory is at most {limit} characters: store one short self-contained fact"
FACT_EMPTY: Final = "there is nothing to remember: give the fact as a sentence"
FACT_ONLY_SECRET: Final = "not remembered: it is only a secret, and secrets are never stored"
STORE_NOT_YOURS: Final = (
    "not remembered: it would replace memory {id} ({text!r}), which {author} wrote, and changing "
    "another person's memory needs an approval this call did not get. Call memory_store again to ask for one."
)
FORGET_NOT_YOURS: Final = (
    "not forgotten: memory {id} ({text!r}) was written by {author}, and forgetting another person's memory "
    "needs an approval this call did not get. Call memory_forget again with its id to ask for one."
)
MEMORY_CHANGED: Final = (
    "not run: the memory changed after the approval was requested; call memory_recall to see it as it is now"
)

# ---- what an approver reads (plans) -----------------------------------------------------
PLAN_STORE: Final = "remember a new memory: {text!r}"
PLAN_STORE_UPDATE_OWN: Final = "update a memory of the requester's own: {old!r} -> {new!r}"
PLAN_REPLACE_SUMMARY: Final = "replace a memory written by {author}: {old!r} -> {new!r}"
PLAN_REPLACE_DETAIL: Final = (
    "memory_store would replace memory {id} ({kind}, {scope}), written by {author}, with a restatement:\n"
    "  now: {old}\n"
    "  new: {new}"
)
PLAN_FORGET_NOTHING: Final = "forget: no memory the requester may change matches"
PLAN_FORGET_OWN: Final = "forget a memory of the requester's own: {text!r} (id {id})"
PLAN_FORGET_SUMMARY: Final = "forget a memory written by {author}: {text!r}"
PLAN_FORGET_DETAIL: Final = "memory_forget would delete memory {id} ({kind}, {scope}), written by {author}:\n  {text}"

# ---- incidents ----------------------------------------------------------------------------
SIMILAR_HEADER: Final = "Similar past incidents:"
INCIDENT_LINE: Final = "- {when}{times}: {symptom}{cause}; {fix}; {outcome}"
INCIDENT_TIMES: Final = " (seen {count} times)"
INCIDENT_CAUSE: Final = "; cause: {cause}"
INCIDENT_FIXED_BY: Final = "fixed by {fix}"
INCIDENT_NO_FIX: Final = "no fix recorded"
INCIDENT_HELD: Final = "the fix held"
INCIDENT_DID_NOT_HOLD: Final = "the fix did not hold"
INCIDENT_OUTCOME: Final = "outcome: {outcome}"
INCIDENT_OUTCOME_UNKNOWN: Final = "outcome unknown"
RECURRING_HEADER: Final = "Recurring incidents:"

# ---- extraction ---------------------------------------------------------------------------
EXTRACTION_SYSTEM: Final = """\
You maintain the long-term memory of an operations assistant. Read the conversation and list the \
durable facts the user stated or confirmed: what a host or service is, runs or listens on, where \
things are, who is responsible for what, rules to follow, and the user's preferences. Skip questions, \
requests, passing states (the current load, a one-off error, "the disk is full right now"), what only \
the assistant said, and secrets (passwords, tokens, keys).
Each fact is one self-contained sentence that names its subject ("postgres on db1 listens on port \
5433", not "it listens on 5433"). "about" names that subject in a word or two (a host, a service, a person).
Answer with JSON only, in exactly this shape, and with {"facts": []} when there is nothing durable:
{"facts": [{"text": "...", "about": "..."}]}"""
EXTRACTION_USER: Final = "Conversation:\n{transcript}"
TRANSCRIPT_USER: Final = "User ({name}): {text}"
TRANSCRIPT_ASSISTANT: Final = "Assistant: {text}"
