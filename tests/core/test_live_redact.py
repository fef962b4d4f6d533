"""Secrets in a streamed reply: what goes out piece by piece never shows more than the
whole reply redacted at once, however the reply is cut into pieces."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from core.redact import LONG_LINE, REDACTED, LiveRedactor, redact

REPLY = (
    "I read /srv/app/.env. The password is hunter2 and STRIPE_KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dc\n"
    "The deploy key is below:\n"
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDzS0PmVyUkd2aR5n1hyQDBvKw7sVUB2v3bG5n8kq5NpAAAAJgX8pT1F/KU\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
    "and curl -u admin:S3cr3tPass https://example.org works. AWS: AKIAIOSFODNN7EXAMPLE done."
)
SECRETS = (
    "hunter2",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "b3BlbnNzaC1rZXkt",
    "QyNTUxOQ",
    "S3cr3tPass",
    "AKIAIOSFODNN7EXAMPLE",
)


def streamed(text: str, cuts: list[int], *, interval: float = 0.0) -> list[str]:
    clock = itertools.count()
    live = LiveRedactor(redact, interval=interval, clock=lambda: float(next(clock)))
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    shown = [live.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    return [*shown, live.flush()]


def test_a_reply_streamed_a_few_characters_at_a_time_reads_as_the_whole_reply_redacted() -> None:
    pieces = streamed(REPLY, list(range(0, len(REPLY), 3)))
    assert "".join(pieces) == redact(REPLY)
    assert all(secret not in "".join(pieces) for secret in SECRETS)
    assert pieces[0] == "" and any(pieces[:10]), "words go out as they complete, long before the end"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(REPLY)), max_size=60))
def test_no_cut_of_the_stream_shows_a_secret(cuts: list[int]) -> None:
    shown = "".join(streamed(REPLY, cuts))
    assert all(secret not in shown for secret in SECRETS)
    assert shown.count(REDACTED) >= 5


def test_a_secret_word_is_never_shown_before_it_is_complete() -> None:
    # "sk_live_…" cut in two: its first half alone does not look like a key
    shown = streamed("token sk_live_4eC39Hq" + "LyjWDarjtT1zdp7dc is set\n", [13])
    assert "sk_live" not in "".join(shown) and REDACTED in "".join(shown)


def test_an_unclosed_key_block_is_masked_whole_at_the_end() -> None:
    text = "here:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAr4nd0m\nbase64linesbase64lines"
    shown = "".join(streamed(text, list(range(0, len(text), 5))))
    assert "MIIEow" not in shown and "base64lines" not in shown and shown.startswith("here:\n")


def test_redaction_is_paced_but_nothing_is_held_at_the_end() -> None:
    calls = 0

    def counting(text: str) -> str:
        nonlocal calls
        calls += 1
        return redact(text)

    now = 0.0
    live = LiveRedactor(counting, interval=1.0, clock=lambda: now)
    words = "word " * 2000
    out = [live.feed(words[i : i + 4]) for i in range(0, len(words), 4)]  # the clock does not move
    out.append(live.flush())
    assert "".join(out) == words and calls <= len(words) // LONG_LINE + 3  # a long line is redacted in parts
