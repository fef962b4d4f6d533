"""The redactor against a corpus of secret shapes (all fake) and of ordinary text that must stay as it is.

Every value below is made up at import time by `fake()`, from a seeded generator, so the
file holds no string a secret scanner would take for a real credential; each value still
has the exact shape of the real thing (prefix, length, alphabet).  `SHAPES` is also the
corpus of tests/core/test_secret_leaks.py, which sends it through the agent and the chat.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass

import pytest

from core.redact import REDACTED, Redactor, only_secret, redact

_rng = random.Random(20240611)
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
LOWER_DIGITS = string.ascii_lowercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


def fake(n: int, alphabet: str = ALNUM, *, mark: str = "FAKE") -> str:
    """``n`` characters of ``alphabet`` starting with ``mark`` when the alphabet allows it."""
    head = mark if all(c in alphabet for c in mark) else ""
    return (head + "".join(_rng.choice(alphabet) for _ in range(n)))[:n]


def fake_aws_secret() -> str:
    # 40 characters of base64 with both cases, digits and a slash, as AWS issues them.
    while True:
        value = "Fake/" + fake(35, B64, mark="k9")
        if any(c.isdigit() for c in value[5:]) and any(c.islower() for c in value):
            return value


@dataclass(frozen=True)
class Shape:
    kind: str
    text: str  # how the secret appears in a file, a log or a command line
    secrets: tuple[str, ...]  # what must not survive redaction


def _shapes() -> list[Shape]:
    s: list[Shape] = []

    def add(kind: str, template: str, *values: str) -> None:
        s.append(Shape(kind, template.format(*values), values))

    def add_text(kind: str, text: str, *values: str) -> None:
        s.append(Shape(kind, text, values))

    pw = fake(16, mark="Fake")
    add("env line PASSWORD", "DB_PASSWORD={}", pw)
    add("export TOKEN quoted", 'export API_TOKEN="{}"', fake(32))
    add("yaml password", "database:\n  host: db1\n  password: {}", fake(14, mark="Fk"))
    add("json password", '{{"user": "app", "password": "{}"}}', fake(18, mark="Fake"))
    add("ini passwd", "[client]\npasswd = {}", fake(12, mark="Fk"))
    add("query string access_token", "GET /api/v1/items?user=ada&access_token={}&page=2 HTTP/1.1", fake(40, URLSAFE))
    add("cli --api-key=", "deploy --api-key={} --region eu-west-1", fake(32))
    add("KEY alone (STRIPE_KEY=)", "STRIPE_KEY={}", fake(24, mark="Fake"))
    add("KEY alone yaml (MAILGUN_KEY:)", "MAILGUN_KEY: {}", fake(32, mark="Fake"))
    add("client_secret", "client_secret: {}", fake(40, URLSAFE))
    add("json api_key", '{{"api_key": "{}", "region": "eu"}}', fake(32))
    add(
        "json SecretAccessKey (aws sts)",
        '{{"Credentials": {{"AccessKeyId": "ASIA{}", "SecretAccessKey": "{}"}}}}',
        fake(16, UPPER_DIGITS),
        fake_aws_secret(),
    )
    add(
        "aws credentials file",
        "[default]\naws_access_key_id = AKIA{}\naws_secret_access_key = {}",
        fake(16, UPPER_DIGITS),
        fake_aws_secret(),
    )
    add("bare aws secret key", "the new key: {}\n", fake_aws_secret())
    add("bare aws secret key alone on a line", "{}", fake_aws_secret())
    add("aws access key id", "key id AKIA{} was rotated", fake(16, UPPER_DIGITS))
    add("aws session token", "aws_session_token = {}", fake(120, B64, mark="Fake"))
    add("database URL", "postgresql+psycopg://app:{}@db1:5432/app", fake(16, mark="Fake"))
    add("URL password containing /", "mongodb://admin:{}@mongo1:27017/admin", "Fa/" + fake(10) + "/k3")
    add("redis URL with empty user", "REDIS=redis://:{}@cache:6379/0", fake(20, mark="Fake"))
    add("ftp URL credentials", "fetch ftp://backup:{}@files.example.net/dump.sql", fake(12, mark="Fk"))
    add(
        "slack webhook URL",
        "https://hooks.slack.com/services/T{}/B{}/{}",
        fake(10, UPPER_DIGITS),
        fake(10, UPPER_DIGITS),
        fake(24),
    )
    add("discord webhook URL", "https://discord.com/api/webhooks/1234567890123456789/{}", fake(68, URLSAFE))
    add("Authorization: Bearer header", "Authorization: Bearer {}", fake(36, URLSAFE))
    add("curl -H Authorization Bearer", "curl -s -H 'Authorization: Bearer {}' https://api.example.net/v1", fake(12))
    add("Authorization: Basic header", "Authorization: Basic {}", fake(28, B64) + "==")
    add("X-Api-Key header", "curl -H 'X-Api-Key: {}' https://api.example.net", fake(32))
    add("Cookie header", "Cookie: sessionid={}; theme=dark", fake(32, LOWER_DIGITS))
    jwt = "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiJ" + fake(30, URLSAFE) + "." + fake(43, URLSAFE)
    add("bare JWT", "token in the log: {}", jwt)
    add("curl -u user:pass", "curl -u deploy:{} https://ci.example.net/job/build", fake(14, mark="Fake"))
    add("mysql -pPASS", "mysqldump -u root -p{} shop > /tmp/shop.sql", fake(12, mark="Fake"))
    add("--password VALUE", "pg_restore --password {} --dbname app dump.tar", fake(12, mark="Fake"))
    add("--token VALUE", "vault login --token {}", "hvs." + fake(24))
    add("sshpass -p", "sshpass -p {} ssh ops@web1", fake(10, mark="Fake"))
    add("google API key", "maps key AIza{}", fake(35, URLSAFE))
    add("google oauth client secret", "GOCSPX-{}", fake(28, URLSAFE))
    add("google oauth access token", "ya29.{}", fake(60, URLSAFE))
    add("stripe live secret key (bare)", "charged with sk_live_{}", fake(24))
    add("stripe restricted key (bare)", "rk_live_{}", fake(24))
    add("stripe test key (bare)", "sk_test_{}", fake(24))
    add("stripe webhook secret", "whsec_{}", fake(32))
    add("sendgrid key", "SG.{}.{}", fake(22, URLSAFE), fake(43, URLSAFE))
    add(
        "slack bot token", "xoxb-{}-{}-{}", fake(12, string.digits, mark=""), fake(13, string.digits, mark=""), fake(24)
    )
    add(
        "slack user token",
        "xoxp-{}-{}-{}-{}",
        fake(11, string.digits, mark=""),
        fake(11, string.digits, mark=""),
        fake(12, string.digits, mark=""),
        fake(32, HEX),
    )
    add("slack app token", "xapp-1-A{}-{}-{}", fake(10, UPPER_DIGITS), fake(13, string.digits, mark=""), fake(64, HEX))
    add("github classic token", "ghp_{}", fake(36))
    add("github app token", "ghs_{}", fake(36))
    add("github fine-grained token", "github_pat_{}_{}", fake(22), fake(59))
    add("gitlab token", "glpat-{}", fake(20, URLSAFE))
    add("openai project key", "sk-proj-{}", fake(48, URLSAFE))
    add("anthropic key", "sk-ant-api03-{}", fake(93, URLSAFE))
    add("discord bot token", "DISCORD={}", ".".join(("M" + fake(25, URLSAFE), fake(6, URLSAFE), fake(38, URLSAFE))))
    add("npm token", "//registry.npmjs.org/:_authToken=npm_{}", fake(36))
    add("pypi token", "password = pypi-AgEIcHlwaS5vcmc{}", fake(60, URLSAFE))
    add("mailgun key", "key-{}", fake(32, HEX))
    add("hugging face token", "hf_{}", fake(34))
    add("digitalocean token", "dop_v1_{}", fake(64, HEX))
    add("shopify token", "shpat_{}", fake(32, HEX))
    add("telegram bot token", "bot token 12{}:AA{}", fake(8, string.digits), fake(33, URLSAFE))
    add(
        "azure storage connection string",
        "DefaultEndpointsProtocol=https;AccountName=backups;AccountKey={};EndpointSuffix=core.windows.net",
        fake(86, B64) + "==",
    )
    add("age secret key", "AGE-SECRET-KEY-1{}", fake(58, UPPER_DIGITS))
    add("wireguard private key", "[Interface]\nPrivateKey = {}\nAddress = 10.0.0.1/24", fake(43, B64) + "=")
    pem_body = "\n".join(fake(64, B64) for _ in range(3))
    add("PEM RSA private key", "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----", pem_body)
    add(
        "OpenSSH private key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----",
        fake(70, B64),
    )
    add(
        "PGP private key block",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{}\n-----END PGP PRIVATE KEY BLOCK-----",
        fake(64, B64),
    )
    add(
        "service account JSON private_key",
        '{{"type": "service_account", "private_key": '
        '"-----BEGIN PRIVATE KEY-----\\n{}\\n-----END PRIVATE KEY-----\\n"}}',
        fake(64, B64),
    )
    salt = fake(16, ALNUM + "./")
    add("shadow $6$ (sha512crypt)", "root:$6${}${}:19700:0:99999:7:::", salt, fake(86, ALNUM + "./"))
    add("shadow $5$ (sha256crypt)", "ada:$5$rounds=5000${}${}:19700:0:99999:7:::", salt, fake(43, ALNUM + "./"))
    add("shadow $y$ (yescrypt)", "ops:$y$j9T${}${}:19700:0:99999:7:::", fake(22, ALNUM + "./"), fake(43, ALNUM + "./"))
    add("bcrypt $2b$", "admin:$2b$12${}", fake(53, ALNUM + "./"))
    add("md5crypt $1$", "old:$1${}${}:18000:0:99999:7:::", fake(8, ALNUM + "./"), fake(22, ALNUM + "./"))
    add("prose: the password is …", "FYI the password is {} until Friday.", fake(12, mark="Fake") + "-staging")
    add("prose: password is (lower-case word)", "db1 admin password is {}", "fakehunter")
    add("prose: password for X is …", "the password for the staging db is {}", fake(10, mark="Fk") + "!")
    add("prose FR: le mot de passe est …", "le mot de passe est {} pour db1", fake(10, mark="Fk") + "2024")
    add("prose FR: mot de passe : …", "mot de passe : {}", fake(11, mark="Fk"))
    add("SQL IDENTIFIED BY", "CREATE USER 'app'@'%' IDENTIFIED BY '{}';", fake(14, mark="Fake"))
    add("SQL WITH PASSWORD", "ALTER ROLE app WITH LOGIN PASSWORD '{}';", fake(14, mark="Fake"))
    add("XML password element", "<datasource><password>{}</password></datasource>", fake(14, mark="Fake"))
    add(".netrc", "machine api.example.net login ada password {}", fake(14, mark="Fake"))
    add(
        ".NET connection string", "Server=db1;User Id=sa;Password={};TrustServerCertificate=true", fake(14, mark="Fake")
    )
    add("sentry DSN", "SENTRY_DSN=https://{}@o12345.ingest.sentry.io/678", fake(32, HEX))
    add("private key in env (base64)", "JWT_PRIVATE_KEY={}", fake(80, B64))
    # the same shapes as tools hand them over: inside JSON, after a file name, in a diff
    aws = fake_aws_secret()
    add_text(
        "credentials file inside a JSON tool result",
        json.dumps({"stdout": "[default]\naws_secret_access_key = " + aws + "\nregion = eu-west-1"}),
        aws,
    )
    aws = fake_aws_secret()
    add_text("JSON inside a JSON tool result", json.dumps({"output": json.dumps({"SecretAccessKey": aws})}), aws)
    pw = fake(16, mark="Fake")
    add_text("docker inspect Env list", json.dumps({"Env": ["POSTGRES_PASSWORD=" + pw, "PATH=/usr/bin"]}), pw)
    add("JSON Authorization header", '{{"headers": {{"Authorization": "Bearer {}"}}}}', fake(20))
    add("search_files hit", "/srv/app/.env:3: STRIPE_KEY={}", fake(24, mark="Fake"))
    add("git diff added line", "@@ -1,2 +1,3 @@\n port=80\n+DB_PASSWORD={}", fake(12, mark="Fake"))
    add("quoted password with spaces", 'DB_PASSWORD="{}"', "two words " + fake(8, mark="Fk"))
    add("PHP array", "'db_password' => '{}',", fake(14, mark="Fake"))
    return s


SHAPES = _shapes()

BENIGN = [
    '2024-06-11T10:00:01Z nginx[812]: 10.0.0.5 - - "GET /index.html HTTP/1.1" 200 1534 "-" "curl/8.5.0"',
    "Jun 11 10:00:02 web1 sshd[4242]: Failed password for invalid user admin from 203.0.113.7 port 52222 ssh2",
    "Jun 11 10:00:03 web1 sshd[4243]: Accepted publickey for ada from 10.0.0.5 port 52223 ssh2: "
    "ED25519 SHA256:Xk3mP9qLw2Rt7Yz0Bc5Nf8Hj1Vd4Gs6Ka2Le9Ou3Iy7",
    'Jun 11 10:00:04 db1 postgres[901]: FATAL:  password authentication failed for user "app"',
    "Filesystem      Size  Used Avail Use% Mounted on\n/dev/sda1        50G   23G   25G  48% /\n"
    "tmpfs           3.9G     0  3.9G   0% /dev/shm\n/dev/sdb1       916G  412G  458G  48% /srv/data",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b\nAuthor: Ada <ada@example.net>\n\n    Fix the backup job",
    "3f786850e387550fdab836ed7e6dc881de23001b refs/heads/main",
    "3F786850E387550FDAB836ED7E6DC881DE23001B",
    "image sha256:9b2a8f0e6c4d3b1a5f7e9d8c6b4a2f0e1d3c5b7a9f8e6d4c2b0a1f3e5d7c9b8a6",
    "/var/lib/docker/overlay2/4f1c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0/merged",
    "/home/ada/Projects2024/Backups/Weekly/ArchiveRun/Logs/2024",
    "/opt/MyCompany/Tools2/bin/RunBackupNowX",
    "see opt/MyCompany/Tools2/bin/RunBackupNowXYZ and home/ada/Projects2024/Backups/Weekly/Arc",
    "class MyVeryLongClassNameForTheBackupService22:",
    "CONTAINER ID   IMAGE          STATUS\n4f1c2a9e8b7d   nginx:1.27     Up 3 days (healthy)",
    "● nginx.service - A high performance web server\n     Active: active (running) since Tue 2024-06-11",
    "drwxr-xr-x 2 root root 4096 Jun 11 10:00 /etc/ssl/private",
    "load average: 0.15, 0.10, 0.05",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc0bYp6m1Ew2q8Xk3mP9qLw2Rt7Yz0Bc5Nf8Hj1Vd4G ada@laptop",
    "The password is wrong, try again.",
    "le mot de passe est incorrect",
    "The token is valid for 3600 seconds.",
    "Please set DB_PASSWORD_FILE in the unit, not the password itself.",
    "request_id=7c9e6679-7425-40de-944b-e07fc1f90ae7 status=200 duration_ms=12",
    'level=info msg="token refreshed" user=ada',
    "PRIMARY_KEY=id",
    "ssh_key=/home/ada/.ssh/id_ed25519",
    "docker run -u 1000:1000 -p 8080:80 nginx",
    "mkdir -pv /srv/data/backups",
    "ssh -p2222 ops@web1",
    "https://example.net:8443/users/ada@example.net/profile",
    "mysql -u app -p shop",
    "docker login --password-stdin registry.example.net < token.txt",
    "for f in $1$HOME/bin; do echo $f; done",
    "Key fingerprint = 4A2B 9C1D 8E7F 6A5B 4C3D  2E1F 0A9B 8C7D 6E5F 4A3B",
    "What is the password policy for db1?",
    "[REDACTED]",
    # configuration and command output that names secrets without holding one
    "passwd:         files systemd",
    "passwd: password updated successfully",
    "#password_encryption = scram-sha-256\t# scram-sha-256 or md5",
    "install google-cloud-cli-gke-gcloud-auth-plugin:amd64 <none> 528.0.0-0",
    "PWD=/home/ada\nOLDPWD=/root\nHOME=/home/ada\nSHELL=/bin/bash",
    "GOOGLE_APPLICATION_CREDENTIALS=/etc/gcp/sa.json",
    "DB_PASSWORD_FILE=/run/secrets/db_password",
    "max_tokens=4096 TOKEN_TTL=3600",
    "export DISCORD_TOKEN=...                     # from step 1",
    "SLACK_BOT_TOKEN=xoxb-…",
    "The tokens are secrets: they are removed from logs.",
    '{"Id": "4f1c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f", "Path": "nginx", "Args": ["-g"]}',
    # source code
    "    token = settings.discord_token.get_secret_value()",
    'app_token: str = ""',
    "self.token = token",
    "key = lambda c: c.name",
    "if previous_token == self.token:",
    'COOKIE: Final[istr] = istr("Cookie")',
    "self._default_proxy_auth = proxy_auth",
    "return sorted(unique.values(), key=rank)[:k]",
    # a certificate's last line is 40 characters of base64
    "-----BEGIN CERTIFICATE-----\n"
    + "\n".join(fake(64, B64, mark="MIIF") for _ in range(3))
    + "\n"
    + fake_aws_secret()
    + "\n-----END CERTIFICATE-----",
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: shape.kind)
def test_every_shape_is_redacted(shape: Shape) -> None:
    out = redact(shape.text)
    for secret in shape.secrets:
        assert secret not in out, f"{shape.kind}: {secret!r} survived in {out!r}"
    assert REDACTED in out


def test_the_corpus_is_large_and_its_values_distinct() -> None:
    assert len(SHAPES) >= 50
    assert len({shape.kind for shape in SHAPES}) == len(SHAPES)
    assert all(len(secret) >= 8 for shape in SHAPES for secret in shape.secrets)


def test_all_shapes_in_one_file_are_redacted() -> None:
    out = redact("\n\n".join(shape.text for shape in SHAPES))
    leaked = [shape.kind for shape in SHAPES for secret in shape.secrets if secret in out]
    assert leaked == []


def test_all_one_line_shapes_on_one_line_are_redacted() -> None:
    out = redact(" ".join(shape.text for shape in SHAPES if "\n" not in shape.text))
    leaked = [shape.kind for shape in SHAPES for secret in shape.secrets if secret in out]
    assert leaked == []


@pytest.mark.parametrize("text", BENIGN)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: shape.kind)
def test_redaction_is_stable(shape: Shape) -> None:
    once = redact(shape.text)
    assert redact(once) == once


def test_what_surrounds_a_secret_stays_readable() -> None:
    shape = next(s for s in SHAPES if s.kind == "database URL")
    assert redact(shape.text) == f"postgresql+psycopg://app:{REDACTED}@db1:5432/app"
    assert redact("mysqldump -u root -pFakePw123 shop") == f"mysqldump -u root -p{REDACTED} shop"
    assert redact("DB_PASSWORD=FakePw123 # set by ansible") == f"DB_PASSWORD={REDACTED}"
    assert redact("log: curl -u ada:FakePw123 https://x.example.net") == (
        f"log: curl -u ada:{REDACTED} https://x.example.net"
    )


def test_known_secrets_are_removed_wherever_they_appear() -> None:
    token = "plain" + "words" + "nobody" + "guesses"  # no shape gives it away
    redactor = Redactor([token, "short"])
    assert redactor(f"ok {token} ok; {token}") == f"ok {REDACTED} ok; {REDACTED}"
    assert redactor("a short word") == "a short word"  # too short to be matched by value
    redactor.add_secret("another-configured-value")
    assert redactor("x another-configured-value y") == f"x {REDACTED} y"


def test_known_secrets_in_their_encoded_forms() -> None:
    password = "Fake p@ss/word"
    redactor = Redactor([password])
    assert password not in redactor(f"pw={password}")
    assert "Fake%20p%40ss%2Fword" not in redactor("postgresql://app:Fake%20p%40ss%2Fword@db/x")


@pytest.mark.parametrize(
    ("text", "only"),
    [
        ("password: FakeHunter2x", True),
        ("the password is FakeHunter2x", True),
        ("le mot de passe est FakeHunter2x", True),
        ("STRIPE_KEY=FakeStripeKey123456", True),
        ("sk_live_" + "FakeFakeFakeFakeFake1234", True),
        ("[REDACTED]", True),
        ("Authorization: Bearer FakeFakeFakeFakeFake", True),
        ("staging db1 admin password is FakeSummer2024", False),
        ("postgres on db1 listens on port 5433", False),
        ("the password is wrong", False),
        ("", False),
    ],
)
def test_only_secret(text: str, only: bool) -> None:
    assert Redactor().only_secret(text) is only
    assert only_secret(redact(text)) is only
