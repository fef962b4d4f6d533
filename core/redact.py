"""Secrets are removed before text reaches the model, the chat, memory or a log.

Two ways: by value (the configured tokens themselves, in every spelling they may take) and
by shape.  Shapes are of three sorts, applied in this order:

1. whole blocks and self-identifying tokens (PEM keys, ``xoxb-``, ``sk_live_``, ``AIza``,
   JWTs, crypt hashes…): the whole match goes;
2. context: a value after a name that says it is secret (``DB_PASSWORD=``, ``"SecretAccessKey":``,
   ``--password VALUE``, ``curl -u user:pass``, a URL's password, "the password is …");
   the name stays, so the text still says what was there;
3. a bare AWS secret key (40 base64 characters), only when it looks random: mixed case and
   digits; never plain hexadecimal (git hashes) nor a path.

Redacting twice gives the same text as redacting once: what is already ``[REDACTED]`` is left.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Final, Literal
from urllib.parse import quote, quote_plus

REDACTED: Final = "[REDACTED]"
MIN_KNOWN_LENGTH: Final = 6  # shorter configured values would blank ordinary words


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _is_redacted(value: str) -> bool:
    return REDACTED in value or not value.strip(" \t'\"`")


# ---- 1. blocks and tokens that say what they are ------------------------------------------------

_PEM = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY((?: BLOCK)?)-----.*?(?:-----END \1PRIVATE KEY\2-----|\Z)", re.S
)
_PEM_REPLACEMENT: Final = f"-----BEGIN PRIVATE KEY----- {REDACTED} -----END PRIVATE KEY-----"

_TOKENS: Final = re.compile(
    "|".join(
        (
            r"\bxox[abposre]-[A-Za-z0-9-]{10,}",  # Slack bot, user, config tokens
            r"\bxapp-[A-Za-z0-9-]{10,}",  # Slack app-level token
            r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub
            r"\bgithub_pat_\w{30,}",
            r"\bgl(?:pat|rt|dt|ptt|cbt)-[\w-]{20,}",  # GitLab
            r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",  # AWS access key id
            r"\bsk-[\w-]{20,}",  # OpenAI, Anthropic (sk-ant-…), DeepSeek…
            r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{10,}",  # Stripe secret and restricted keys
            r"\bwhsec_[A-Za-z0-9]{20,}",  # Stripe webhook signing secret
            r"\bAIza[\w-]{35}",  # Google API key
            r"\bGOCSPX-[\w-]{20,}",  # Google OAuth client secret
            r"\bya29\.[\w-]{20,}",  # Google OAuth access token
            r"\bSG\.[\w-]{16,32}\.[\w-]{16,64}",  # SendGrid
            r"\beyJ[\w-]{10,}\.[\w-]{10,}(?:\.[\w-]*){1,3}",  # JWT / JWE
            r"\bnpm_[A-Za-z0-9]{36}\b",
            r"\bpypi-[\w-]{50,}",
            r"\bkey-[0-9a-f]{32}\b",  # Mailgun
            r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face
            r"\bdo[opr]_v1_[0-9a-f]{64}\b",  # DigitalOcean
            r"\bshp(?:at|ca|pa|ss)_[0-9a-fA-F]{32}\b",  # Shopify
            r"\bhv[sbr]\.[\w-]{20,}",  # HashiCorp Vault
            r"\b\d{8,10}:AA[\w-]{33}\b",  # Telegram bot token
            r"\bAGE-SECRET-KEY-1[0-9A-Z]{58}\b",  # age
            r"\b[MNO][\w-]{23,27}\.[\w-]{6}\.[\w-]{27,40}\b",  # Discord bot token
            # crypt(3) hashes as in /etc/shadow and htpasswd: $id$[params$]salt$hash
            r"\$(?:1|2[abxy]?|5|6|7|y|gy|apr1|md5|sha1|argon2(?:id|i|d)|scrypt|pbkdf2[\w-]*)\$"
            r"(?:[^\s:$'\"]+\$){1,4}[./A-Za-z0-9+=]{8,}",
        )
    )
)

# The part after these prefixes is the secret; the prefix says what it was.
_WEBHOOKS: Final = re.compile(
    r"(?P<keep>https?://hooks\.slack\.com/(?:services|workflows|triggers)/)(?P<v>[\w/-]+)"
    r"|(?P<keep2>https?://(?:\w+\.)?discord(?:app)?\.com/api/webhooks/\d+/)(?P<v2>[\w-]+)"
)

# ---- 2. context -------------------------------------------------------------------------------------

# Each pattern's secret is in the named group(s) starting with "v"; the rest of the match stays.
_CONTEXT_PATTERNS: Final = tuple(
    re.compile(p)
    for p in (
        # Authorization headers (also JSON-quoted), then any long bearer token
        r"(?i)\b(?:proxy-)?authorization\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?[ \t]*"
        r"(?:(?:bearer|basic|token|digest|bot|negotiate|apikey|sso-key)[ \t]+(?P<v>[^\s'\"\\,;]+)"
        r"|(?P<v2>[A-Za-z0-9._~+/=-]{16,}))",
        r"(?i)\bbearer[ \t]+(?P<v>[A-Za-z0-9._~+/=-]{16,})",
        r"(?i)(?<![\w-])(?:set-)?cookie:[ \t]*(?P<v>[\w.-]+=[^\s;'\"\\]*(?:;[ \t]*[\w.-]+(?:=[^\s;'\"\\]*)?)*)",
        # user:password@ in a URL; a password may hold "/" (not "?" or "#", which would end it)
        r"(?i)\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:(?P<v>[^\s@'\"?#]+)@(?=[\w.\[\]-])",
        # curl -u user:pass, --user user:pass
        r"\bcurl\b[^\n|;&]*?(?<![\w-])(?:-u[ \t]*|--user[= \t][ \t]*)['\"]?[^\s:'\"]+:(?P<v>[^\s'\"]+)",
        # mysql -pPASS (attached: "-p" alone prompts), sshpass -p PASS
        r"\b(?i:mysql\w*|mariadb[\w-]*)\b[^\n|;&]*?[ \t]-p(?P<v>[^\s'\"]+|'[^'\n]*'|\"[^\"\n]*\")",
        r"\bsshpass\b(?:[ \t]+-[a-oq-zA-Z]\S*)*[ \t]+-p[ \t]*(?P<v>[^\s'\"]+|'[^'\n]*'|\"[^\"\n]*\")",
        # --password VALUE, --token VALUE, -passin pass:VALUE (not --password-stdin, --token-file)
        r"(?i)(?<![\w-])--?(?:[a-z0-9]+-)*(?:password|passwd|passphrase|pass|passin|passout|pwd|token|secret"
        r"|api-?key|private-key)(?![\w-])[ \t]+(?P<v>'[^'\n]*'|\"[^\"\n]*\"|[^\s'\"-][^\s'\"]*)",
        # SQL: IDENTIFIED BY 'x', [ENCRYPTED] PASSWORD 'x'
        r"(?i)\bidentified(?:[ \t]+with[ \t]+\w+)?[ \t]+by(?:[ \t]+password)?[ \t]+(?P<q>['\"])(?P<v>[^'\"\n]*)(?P=q)",
        r"(?i)\bpassword[ \t]+(?P<q>['\"])(?P<v>[^'\"\n]+)(?P=q)",
        # <password>x</password>, <apiKey>x</apiKey>
        r"(?i)<(?P<tag>[\w:.-]*(?:password|passwd|secret|token|api_?key|private_?key)[\w:.-]*)>"
        r"(?P<v>[^<]+)</(?P=tag)>",
        # .netrc
        r"(?i)\bmachine[ \t]+\S+(?:[ \t]+login[ \t]+\S+)?[ \t]+password[ \t]+(?P<v>\S+)",
        r"(?im)^[ \t]*password[ \t]+(?P<v>\S+)[ \t]*$",
    )
)
_URL_PASSWORD, _USER_PASSWORD = _CONTEXT_PATTERNS[3], _CONTEXT_PATTERNS[4]
_PORT_AND_PATH: Final = re.compile(r"\d+(?:/.*)?")  # https://host:8443/users/a@b is no password
_CONTEXT_CHECKS: Final[dict[re.Pattern[str], Callable[[str], bool]]] = {
    _URL_PASSWORD: lambda value: _PORT_AND_PATH.fullmatch(value) is None,
    _USER_PASSWORD: lambda value: not value.isdigit(),  # docker run -u 1000:1000
}

# "the password is X", "password for db1 is X", "le mot de passe (de db1) est X", "mot de passe : X"
_PROSE: Final = re.compile(
    r"(?i)\b(?:pass(?:word|phrase)|passwd)"
    r"(?:[ \t]+(?:for|of|to|on)[ \t]+[^\n.,;:!?]{1,40}?)?[ \t]+(?:is|was|is now|will be)[ \t]+"
    r"(?P<v>[\"'`«“‘]?[ \t]*[^\s\"'`»”’]+)"
    r"|\b(?:mot[ \t]+de[ \t]+passe|mdp)"
    r"(?:[ \t]+(?:de|du|des|pour|d')[ \t]*[^\n.,;:!?]{1,40}?)?[ \t]*(?:est|était|sera|:|=)[ \t]*"
    r"(?P<v2>[\"'`«“‘]?[ \t]*[^\s\"'`»”’]+)"
)

# Words that follow "the password is" without being one ("the password is wrong").
_PROSE_STOP: Final = _words(
    """
    wrong incorrect invalid expired correct valid required empty missing set unset changed reset rotated too
    not the a an being still now also stored saved kept in on at from and hidden secret same different weak
    strong long short needed mandatory optional ok okay fine unknown known case sensitive encrypted hashed
    managed generated random blank null none nil defined undefined configured here there below above following
    as that this what which my your our its their his her given provided sent shown printed logged visible
    leaked compromised used shared safe unsafe good bad fixed updated removed deleted disabled enabled locked
    unlocked identical only never always usually stale really just simply then generally typically actually
    currently automatically probably
    incorrecte invalide expiré expirée correcte valide requis obligatoire vide manquant changé modifié
    réinitialisé trop pas le la les un une dans stocké enregistré caché même différent faible fort court
    nécessaire inconnu chiffré généré aléatoire défini configuré ici suivant celui ce mon ton votre notre son
    leur donné fourni envoyé affiché utilisé partagé bon mauvais faux supprimé désactivé activé bloqué
    verrouillé toujours encore déjà bien en
    """
)

# NAME = value, NAME: value, "name": "value", --name=value, name => value
_NAME_SEP: Final = re.compile(
    r"(?:(?<=\\[nrt])|(?<![\w.\\-]))(?P<name>-{0,2}[A-Za-z_][\w.-]*)(?:\\?[\"'])?"
    r"[ \t]*(?P<sep>=>|:=|=(?!=)|:(?!:))(?!//)[ \t]*"
)
_VALUE: Final = re.compile(
    r"\\\"(?P<v1>(?:(?!\\\").)+)\\\""  # \"value\" inside a JSON string
    r"|\"(?P<v2>(?:\\.|[^\"\\\n])+)\""
    r"|'(?P<v3>[^'\n]+)'"
    r"|(?P<v4>[^\s,;&'\"`\\<>]+)"
)
_REST_OF_LINE: Final = re.compile(r"(?P<v>[^\n]*[^\s])")
_LINE_LEAD: Final = re.compile(r"[ \t+-]*(?:(?:export|set|declare)[ \t]+)?[\"']?")

_NAME_PARTS: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# Anywhere in a name (SECRET_KEY_BASE, SecretAccessKey); only last (DB_PASS, MYSQL_PWD, but not auth-plugin).
_STRONG_ANYWHERE: Final = _words("password passwd passphrase secret secrets token apikey privatekey")
_STRONG_LAST: Final = _words("pass pwd pw auth authorization credential credentials creds dsn mdp")
_STRONG_JOINED: Final = _words(
    "password passwd passphrase secret apikey privatekey accesskey authtoken accesstoken refreshtoken motdepasse"
)
# A name ending in one of these is about a secret, not the secret: DB_PASSWORD_FILE, TOKEN_TTL.
_META_LAST: Final = _words(
    "file files path dir url uri ttl expiry expires expiration length len size type name names count min max "
    "timeout policy header prefix enabled required rotation kind mode algorithm algo method format version hint "
    "env var endpoint host port scheme provider backend location manager command cmd helper lifetime age limit "
    "audience issuer scope scopes field fields id ids user username budget lock settings source sources plugin "
    "tokens encryption hashing strength complexity prompt reset change changed expire expired check validation "
    "rounds cost cache storage store client clients dirs entries"
)
_NOT_SECRET_NAMES: Final = frozenset({"pwd", "oldpwd"})  # the shell's working directory
_PATH: Final = re.compile(r"(?:~|\.{1,2})?/[\w.@%+~-]*(?:/[\w.@%+~-]*)+")
_KNOWN_ROOT: Final = re.compile(r"(?:~|\.{1,2})?/(?:etc|run|var|home|root|usr|opt|srv|tmp|mnt|data)?/|\.[a-z]{2,5}$")
# What follows `token: ` or `token = ` in source code rather than in a config file.
_CODE: Final = re.compile(
    r"(?:str|int|float|bool|bytes|list|dict|tuple|set|frozenset|object|type|Any|Optional|Union|Literal|Final"
    r"|ClassVar|Callable|Sequence|Mapping|Iterable|Iterator|SecretStr|SecretBytes|Path)\b(?![.-])"  # annotation
    r"|_?[A-Z][a-z0-9]+[A-Z]\w*[ \t]*[|=,)\]\[]"  # CamelCase type: PydanticBaseSettingsSource,
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*[ \t]*[()\[\]{}]"  # a call, an index, the end of a call: next(, key=rank)
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\.[A-Za-z]*_\w*"  # an attribute: config.bot_token
    r"|[a-z_][a-z_]+(?:\.[a-z_][a-z_]+)+$"  # self.token, client.http.token
    r"|(?:True|False|None|null|true|false|nil|yes|no|on|off|enabled|disabled|always|never|none)(?![\w.-])"
    r"|[A-Za-z_][\w.]*[ \t]+(?:or|and|if|else|for|in|is|not)[ \t]"  # part.device or mount
    r"|\((?=[\w\"'(])"  # a tuple or a parenthesised expression
    r"|(?:lambda|await|yield|not)\b|[fbr][\"']|:\w+:|_\w+$"  # lambda, f-string, :class:`str`, _private
    r"|[$%]\(?\{?[A-Za-z_]"  # $TOKEN, ${TOKEN}, %(token)s
    r"|[\[{].*[\]}]$|\{\{"  # [PAD], {{ vault_password }}
)
# Examples in docs and templates: "...", "****", "xoxb-…", "<your token>", "{auth}", "[PAD]".
_PLACEHOLDER: Final = re.compile(
    r"[.…*xX#_-]+|.*(?:…|\.\.\.)|<[^<>]*>|\{[^{}]*\}|\[[A-Z_]+\]|(?i:pass|password|passwd|secret|token|changeme|value)"
)
# "app_token: App-level token", ":param logging_token: Available on: …": a description, not a value.
_DESCRIPTION: Final = re.compile(r"[A-Za-z][A-Za-z-]*[,.:;]?(?:[ \t]+[A-Za-z][A-Za-z-]*[,.:;]?)+(?:[ \t].*)?")


def _name_kind(name: str) -> Literal["strong", "weak"] | None:
    """How surely a variable, option or key named ``name`` holds a secret."""
    parts = [p.lower() for p in _NAME_PARTS.findall(name)]
    if not parts or name.strip("-").lower() in _NOT_SECRET_NAMES or parts[-1] in _META_LAST:
        return None
    joined = "".join(parts)
    if parts == ["pass"] and not name.isupper():
        return None  # "pass:" in prose; PASS=, DB_PASS= are secrets
    if (
        parts[-1] in _STRONG_LAST
        or any(p in _STRONG_ANYWHERE for p in parts)
        or any(word in joined for word in _STRONG_JOINED)
    ):
        return "strong"
    if parts[-1] == "key":
        return "weak"
    return None


def _is_path(value: str) -> bool:
    return _PATH.fullmatch(value) is not None


def _plausible(kind: Literal["strong", "weak"], value: str, *, name: str, sep: str, after: str | None) -> bool:
    """Whether ``value``, found after ``name`` of that kind, is a secret.

    ``after`` is the text from an unquoted value on, to tell source code and prose from a
    setting; a quoted value (JSON, a shell or YAML string) is data, not code: ``after`` is None.
    """
    value = value.strip().rstrip(",;")
    first = value.split()[0].rstrip(",;)") if value else ""
    if _is_redacted(value) or _PLACEHOLDER.fullmatch(first):
        return False
    if after is not None:
        if _CODE.match(after) or _CODE.fullmatch(value):
            return False
        parts = _NAME_PARTS.findall(name)
        last_part = parts[-1].lower() if parts else name.lower()
        if first.isidentifier() and not any(c.isdigit() for c in first) and last_part in first.lower():
            return False  # token=token, self._auth = proxy_auth, secrets: ActivitySecrets
        if sep == ":" and _DESCRIPTION.fullmatch(after.split("\n", 1)[0].strip()):
            return False  # app_token: App-level token
    if _is_path(value):
        # STRONG_SECRET=/etc/x.pem names a file; a weak KEY=/path never is a key
        return kind == "strong" and _KNOWN_ROOT.search(value) is None
    if kind == "strong":
        return True
    if len(value) >= 16 and not value.isidentifier():
        return True
    mixed = any(c.isupper() for c in value) and any(c.islower() for c in value)
    symbol = any(not (c.isalnum() or c in " _.-") for c in value)
    return len(value) >= 6 and (any(c.isdigit() for c in value) or mixed or symbol)


def _at_line_start(text: str, pos: int) -> bool:
    start = text.rfind("\n", 0, pos) + 1
    return _LINE_LEAD.fullmatch(text, start, pos) is not None


def _redact_named(text: str) -> str:
    """Values after a secret-looking name.  Names are found without consuming the values, so a
    ``token=`` inside an ordinary ``url=…`` value is still found."""
    pieces: list[str] = []
    last = 0
    for m in _NAME_SEP.finditer(text):
        if m.start() < last:
            continue
        name = m.group("name")
        kind = _name_kind(name)
        if kind is None:
            continue
        at = m.end()
        value = _VALUE.match(text, at)
        if value is None:
            continue
        if value.group("v4") is not None:
            rest = _REST_OF_LINE.match(text, at) if _at_line_start(text, m.start()) else None
            if rest is not None and REDACTED not in rest.group("v"):
                value = rest  # FOO_TOKEN=two words # comment
            elif m.group("sep") == ":":
                kind = "weak"  # "… our tokens: they are …" is prose; "X-Api-Key: 8f3a…" is not
        group = next(g for g in ("v1", "v2", "v3", "v4", "v") if g in value.groupdict() and value.group(g))
        start, end = value.span(group)
        after = text[start : start + 200] if group in ("v4", "v") else None
        if not _plausible(kind, text[start:end], name=name.lstrip("-"), sep=m.group("sep"), after=after):
            continue
        pieces += [text[last:start], REDACTED]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


# ---- 3. a bare AWS secret access key -------------------------------------------------------------

_AWS_SECRET: Final = re.compile(r"(?<![\w+/.~$-])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])")
_PUBLIC_BLOCK: Final = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.S)
_BASE64_LINE: Final = re.compile(r"[A-Za-z0-9+/=]+")
_LETTER_RUNS: Final = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")


def _looks_random(value: str) -> bool:
    """Random base64, not a path or a CamelCase name: both cases, digits, short runs of letters."""
    if value.startswith("/") or not any(c.isupper() for c in value) or not any(c.islower() for c in value):
        return False
    if sum(c.isdigit() for c in value) < 2 or len(set(value)) < 22:
        return False
    runs = _LETTER_RUNS.findall(value)
    return sum(map(len, runs)) / len(runs) < 3.5  # random: about 2; words: 4 and more


# ---- the pieces ---------------------------------------------------------------------------------


def _anything(value: str) -> bool:
    return True


def _replace_groups(match: re.Match[str]) -> str:
    """The match with each of its ``v…`` groups replaced by the marker (none already redacted)."""
    whole, base = match.group(0), match.start()
    check = _CONTEXT_CHECKS.get(match.re, _anything)
    spans = [
        match.span(name)
        for name, value in match.groupdict().items()
        if name.startswith("v")
        and value is not None
        and not _is_redacted(value)
        and not _PLACEHOLDER.fullmatch(value)
        and check(value)
    ]
    for start, end in sorted(spans, reverse=True):
        whole = whole[: start - base] + REDACTED + whole[end - base :]
    return whole


def _prose(match: re.Match[str]) -> str:
    group = "v" if match.group("v") is not None else "v2"
    raw = match.group(group)
    value = raw.strip(" \t\"'`«“‘").rstrip(".,;:)]")
    if not value or _is_redacted(raw) or value.lower() in _PROSE_STOP:
        return match.group(0)
    start = match.start(group) - match.start() + raw.index(value)
    whole = match.group(0)
    return whole[:start] + REDACTED + whole[start + len(value) :]


def _in_base64_block(text: str, start: int) -> bool:
    """A certificate's (or any wrapped base64's) last line: the line before is a long base64 line."""
    line_start = text.rfind("\n", 0, start) + 1
    if line_start == 0:
        return False
    previous = text[text.rfind("\n", 0, line_start - 1) + 1 : line_start - 1].strip()
    return len(previous) >= 60 and _BASE64_LINE.fullmatch(previous) is not None


def _aws_secrets(text: str) -> str:
    blocks = [m.span() for m in _PUBLIC_BLOCK.finditer(text)]

    def one(match: re.Match[str]) -> str:
        inside = any(a <= match.start() < b for a, b in blocks) or _in_base64_block(text, match.start())
        return REDACTED if not inside and _looks_random(match.group(0)) else match.group(0)

    return _AWS_SECRET.sub(one, text)


def _shapes(text: str) -> str:
    text = _PEM.sub(_PEM_REPLACEMENT, text)
    text = _TOKENS.sub(REDACTED, text)
    text = _WEBHOOKS.sub(lambda m: (m.group("keep") or m.group("keep2")) + REDACTED, text)
    for pattern in _CONTEXT_PATTERNS:
        text = pattern.sub(_replace_groups, text)
    text = _PROSE.sub(_prose, text)
    text = _redact_named(text)
    return _aws_secrets(text)


# ---- "is this only a secret?" -------------------------------------------------------------------

_LABEL_WORDS: Final = _words(
    """
    key keys bearer basic token tokens secret password passwd pass pwd mot passe mdp clé cle jeton webhook hash
    authorization auth cookie begin end private export set
    the a an is was are my our your its it this that here new current now to use
    le la les l un une est était mon ma mes notre votre son sa voici voilà c ce cette nouveau nouvelle actuel
    actuelle de du des
    """
)


def only_secret(redacted: str) -> bool:
    """Whether an already redacted text is nothing but a secret and the words that label it.

    "password: [REDACTED]" and "STRIPE_KEY=[REDACTED]" are; "staging db1 admin password is
    [REDACTED]" is not (it says which machine).  A text with nothing redacted never is.
    """
    if REDACTED not in redacted:
        return False
    words = re.findall(r"\w+", redacted.replace(REDACTED, " "))
    return all(word.lower() in _LABEL_WORDS or _name_kind(word) is not None for word in words)


class Redactor:
    """Removes secrets by shape and by value (the configured tokens themselves)."""

    def __init__(self, known_secrets: Iterable[str] = ()) -> None:
        self._known: list[str] = []
        for value in known_secrets:
            self.add_secret(value)

    def add_secret(self, value: str) -> None:
        """Redact ``value`` wherever it appears, also URL-encoded or JSON-escaped."""
        if not value or len(value) < MIN_KNOWN_LENGTH:
            return
        for form in (value, quote(value, safe=""), quote_plus(value, safe=""), json.dumps(value)[1:-1]):
            if form not in self._known:
                self._known.append(form)
        self._known.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._known:
            text = text.replace(secret, REDACTED)
        return _shapes(text)

    def only_secret(self, text: str) -> bool:
        """Whether ``text`` says nothing once its secrets are redacted (not worth remembering)."""
        return only_secret(self(text))


def redact(text: str) -> str:
    """Redact by shape only (no configured values)."""
    return Redactor()(text)


LONG_LINE: Final = 1000  # characters; a longer line is redacted in parts cut after a word
_KEY_BLOCK_OPEN: Final = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_KEY_BLOCK_CLOSE: Final = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")


class LiveRedactor:
    """Masks secrets in text that arrives in pieces (a model's reply as it streams).

    Secrets are words and lines, so text goes out a word at a time: the current line is
    redacted up to its last complete word, and only what extends what was already shown is
    emitted; a word is never shown before it is complete. A private key block is held back
    whole until its end line, then goes out redacted. When masking a later word changes how
    the start of the line reads (it never should), the rest of that line is held back: the
    stored step, redacted whole, is the reference. `redact` is called at most once per
    `interval` seconds per stream (and once per completed line; a line longer than `LONG_LINE`
    is cut after a word), so a long reply costs time linear in its length. Call `feed("")`
    when nothing came for a while: what was held for the interval goes out.
    """

    def __init__(
        self, redact: Callable[[str], str], *, interval: float = 0.05, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.redact = redact
        self.interval = interval
        self.clock = clock
        self._line = ""  # the raw current line (no newline yet)
        self._shown = ""  # what has gone out of the current line (redacted)
        self._stuck = False  # the current line stopped extending what was shown
        self._block: list[str] | None = None  # the raw lines of an open private key block
        self._last = float("-inf")

    def feed(self, text: str) -> str:
        """What may be shown now of `text` and what came before it."""
        out: list[str] = []
        *complete, self._line = (self._line + text).split("\n")
        for line in complete:
            out.append(self._end_line(line, "\n"))
        if len(self._line) > LONG_LINE and self._block is None:  # cut a very long line after a word
            head = _through_last_word(self._line)
            if head and "-----BEGIN" not in head:
                out.append(self._end_line(head, ""))
                self._line = self._line[len(head) :]
        if self._block is None and not self._stuck and self.clock() - self._last >= self.interval:
            # a line that may open a key block waits for its end
            out.append(self._extend(_through_last_word(self._line.split("-----BEGIN", 1)[0])))
        return "".join(out)

    def flush(self) -> str:
        """The end of the stream: what is left, redacted (an unclosed key block is masked whole)."""
        if self._block is not None:
            held = "\n".join([*self._block, self._line])
            self._block, self._line = None, ""
            return self.redact(held)
        out = self._extend(self._line)
        self._line, self._shown, self._stuck = "", "", False
        return out

    def _end_line(self, line: str, newline: str) -> str:
        if self._block is not None:
            self._block.append(line)
            if not _KEY_BLOCK_CLOSE.search(line):
                return ""
            held, self._block = "\n".join(self._block), None
            return self.redact(held) + newline
        opened = _KEY_BLOCK_OPEN.search(line)
        if opened and not _KEY_BLOCK_CLOSE.search(line, opened.end()):
            before = self._extend(line[: opened.start()])
            self._block = [line[opened.start() :]]
            self._shown, self._stuck = "", False
            return before
        out = self._extend(line) + newline
        self._shown, self._stuck = "", False
        return out

    def _extend(self, raw: str) -> str:
        if self._stuck or not raw:
            return ""
        self._last = self.clock()
        masked = self.redact(raw)
        if not masked.startswith(self._shown):
            self._stuck = True
            return ""
        new, self._shown = masked[len(self._shown) :], masked
        return new


def _through_last_word(line: str) -> str:
    """The line up to and with its last whitespace: every word in it is complete."""
    cut = max(line.rfind(" "), line.rfind("\t"))
    return line[: cut + 1] if cut >= 0 else ""
