"""Every sentence the application says to an operator, in one place: the CLI's lines, the
start-up warnings and what `doctor` and the commands print. (The chat texts are in
adapters/texts.py, the agent's in core/texts.py, the health package's in core/health/texts.py.)"""

from __future__ import annotations

# ---- the CLI
FAILED = "orchestrator: {error}"
COMMAND_FAILED = "orchestrator {command}: {error}"
INTERRUPTED = "interrupted"
ASK_NO_QUESTION = 'orchestrator ask: give a question, e.g. orchestrator ask "how full is the disk?"'
NO_PENDING_APPROVALS = "no pending approvals"
NO_APPROVALS = "no approvals yet"
AUDIT_EMPTY = "the audit log is empty"
RUNS_EMPTY = "no runs yet: ask something with `orchestrator ask` or in chat"
RUN_UNKNOWN = "orchestrator runs show: there is no run #{id} (`orchestrator runs` lists them)"
DOCTOR_LINE = "[{mark}] {name}: {detail}"
DOCTOR_FIX = "       fix: {fix}"
DOCTOR_PASSED = "all checks passed"
DOCTOR_FAILED = "{failed} check(s) failed"
REPORT_HOURS_MISUSE = "orchestrator report: --hours is for the daily report; `report health` checks the host now"

# ---- orchestrator run
RUN_ALL_ALONE = (
    "orchestrator run all: neither Slack nor Discord is configured, so only the scheduler runs "
    "(as `orchestrator run scheduler`); set SLACK_BOT_TOKEN and SLACK_APP_TOKEN, or DISCORD_TOKEN, to serve chat"
)
RUN_NOTHING_CONFIGURED = (
    "orchestrator run all: neither Slack nor Discord is configured (set SLACK_BOT_TOKEN and "
    "SLACK_APP_TOKEN, or DISCORD_TOKEN) and the scheduler is off (ORCHESTRATOR_SCHEDULER)"
)

# ---- the data directory
DATA_DIR_UNUSABLE = "cannot use the data directory {path} ({reason}): set {setting} to a directory this user can write"
GITOPS_NOT_A_DIRECTORY = "the GitOps directory {path} does not exist or is not a directory: create it or fix {setting}"
GITOPS_OUTSIDE_ROOTS = (
    "the GitOps directory {path} is outside the file roots ({roots}): add it to ORCHESTRATOR_FILE_ROOTS "
    "or remove it from {setting}"
)

# ---- the memory, as the bot opens it
MEMORY_UNAVAILABLE = "memory is off for this run: {problem}"
# Why a memory cannot open, and what to do (start-up warning, `orchestrator doctor`, `orchestrator memory`).
MEMORY_UNWRITABLE = "{path} cannot be written ({reason})"
MEMORY_FIX_UNWRITABLE = (
    "make it writable by this user, set ORCHESTRATOR_DATA_DIR to a directory it can write, or ORCHESTRATOR_MEMORY=off"
)
MEMORY_FIX_FALLBACK = (
    "set ORCHESTRATOR_EMBEDDING=use to keep it and silence this, or ORCHESTRATOR_EMBEDDING=ollama "
    "with ORCHESTRATOR_EMBED_MODEL=bge-m3 for a stronger model (docs/memory.md)"
)
MEMORY_UNREADABLE = "{path} is not a memory store this version can read ({error})"
MEMORY_FIX_UNREADABLE = (
    "move it aside (mv {path} {path}.broken) to start a new memory there, or set ORCHESTRATOR_MEMORY=off"
)
MEMORY_SERVER_DOWN = "the Chroma server at {where} does not answer ({error})"
MEMORY_FIX_SERVER = "start the Chroma server, or unset CHROMA_HOST to use the embedded store"
MEMORY_OTHER = "{where}: {error}"
MEMORY_FIX_OTHER = "set ORCHESTRATOR_MEMORY=off to run without memory"
# Re-embedding, at start-up (in the log) and by `orchestrator memory reindex`.
MEMORY_REINDEX_START = "re-embedding {memories} at {location} with {model} (built with {old}); nothing is lost"
MEMORY_REINDEX_PROGRESS = "re-embedding the memory with {model}: {done}/{total}"
MEMORY_REINDEX_DONE = "re-embedded {memories} at {location} with {model} in {seconds:.1f} s"

# ---- orchestrator memory
MEMORY_FORGET_USAGE = "orchestrator memory forget: give an ID or --query TEXT (not both)"
MEMORY_REINDEX_BAR = "[{bar}] {done}/{total} memories ({share:.0%})"
MEMORY_REINDEX_STEP = "{done}/{total} memories re-embedded ({share:.0%})"
MEMORY_RESET_PROMPT = "This deletes all {count} memories at {location} (built with {model}). Type 'yes' to continue: "
MEMORY_RESET_DONE = "deleted {count} memories at {location}; the next start builds a new store with {model}"
MEMORY_RESET_EMPTY = "the memory store at {location} holds nothing; it starts over with {model}"
MEMORY_RESET_ABORTED = "nothing deleted"
MEMORY_NOTHING_STORED = "no memories{where}"
MEMORY_NOTHING_FOUND = "nothing remembered about {query!r}{where}"
MEMORY_FORGOT = "forgot: {text}  ({id})"
MEMORY_NO_SUCH_ID = "no memory with id {id!r}{where}"
MEMORY_NO_MATCH = "no memory close enough to {query!r}{where}; `orchestrator memory search` shows ids to forget"
MEMORY_FOOTER = "{count} memor{plural} at {location} (embedding model {model})"
MEMORY_REINDEX_NOTHING = "{memories} at {location}, already embedded with {model}: nothing to do"

# ---- orchestrator pairing
PAIRING_APPROVED = "approved: {who}{name} may now ask (their DMs and mentions are answered from now on)"
PAIRING_UNKNOWN_CODE = "no pairing code {code!r}; `orchestrator pairing list` shows the pending ones"
PAIRING_NOT_PENDING = "code {code} was already {status}{by}; nothing changed"
PAIRING_EXPIRED = "code {code} has expired: ask {who} to DM the bot again for a new one"
PAIRING_NOT_AN_APPROVER = (
    "only the console approvers may approve pairings (ORCHESTRATOR_CONSOLE_APPROVERS); you are {user!r}"
)
PAIRING_REVOKED = "revoked: {who} may no longer ask ({count} grant(s) or code(s) ended)"
PAIRING_NOTHING_TO_REVOKE = "{who} has no pairing to revoke"
PAIRING_STILL_ALLOWED = "note: {who} is still allowed by {setting}"
PAIRING_BAD_WHO = "give PLATFORM:USER, e.g. slack:U024BE7LH or discord:123456789012345678"
PAIRING_NOTHING = "no pending codes and nobody paired (--all shows used, expired and revoked ones)"

ATTACH_MISSING = "orchestrator ask: --attach {path}: no such file (give the path of a file to send with the question)"

# ---- backups: orchestrator backup now|list, and the weekly report (bot/backups.py)
BACKUP_NOTHING_CONFIGURED = (
    "nothing to back up: set ORCHESTRATOR_BACKUP_DATABASES (postgresql:// URLs or database names), "
    "ORCHESTRATOR_BACKUP_PATHS (directories such as /etc/nginx) or ORCHESTRATOR_BACKUP_OLLAMA=true "
    "(docs/tools.md#backups)"
)
BACKUP_PART_DONE = "{kind} {source}: {name} {size} sha256 {sha256}"
BACKUP_PART_FAILED = "{kind} {source}: FAILED: {error}"
BACKUP_PRUNED = "deleted {count} backup(s) beyond retention (keep {keep}), {why}"
BACKUP_PRUNE_WAITING = (
    "{count} backup(s) beyond retention (keep {keep}) were kept: approve backup_prune in chat, "
    "run `orchestrator backup now --prune`, or set ORCHESTRATOR_BACKUP_AUTO_PRUNE=true"
)
BACKUP_UPLOADED = "uploaded {count} backup(s) to {where}, {why}"
BACKUP_UPLOAD_FAILED = "not uploaded: {error}"
BACKUP_UPLOAD_WAITING = (
    "not uploaded to {where}: approve backup_s3 in chat, run `orchestrator backup now --upload`, "
    "or set ORCHESTRATOR_BACKUP_AUTO_UPLOAD=true"
)
BACKUP_BY_CONFIGURATION = "allowed by configuration ({settings})"
BACKUP_BY_OPERATOR = "asked by {who} at the console"
BACKUP_REPORT_TITLE = "Weekly backup: {count} file(s), {size}"
BACKUP_REPORT_FAILED = ", {failed} FAILED"
BACKUP_REPORT_WHERE = "Backups are in {directory}."
BACKUP_WHERE = "backups are in {directory} (`orchestrator backup list` shows them)"
BACKUP_NONE = "no backups in {directory} yet: `orchestrator backup now` takes one"
BACKUP_CHECKSUM_OK = "checksum ok"
BACKUP_CHECKSUM_BAD = "CHECKSUM MISMATCH (the file changed or is damaged)"
BACKUP_BEYOND = ", beyond retention"
BACKUP_LIST_FOOTER = "{count} backup(s), {size} in {directory} (retention: the newest {keep} of each kind)"
