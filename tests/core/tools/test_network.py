"""Network checks against servers on 127.0.0.1 (http, https with a private CA) and closed ports."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core.errors import ToolError
from core.tools.network import network_tools
from core.tools.registry import ToolSpec


def tools(**kwargs: Any) -> dict[str, ToolSpec]:
    return {s.name: s for s in network_tools(timeout=3, **kwargs)}


async def invoke(spec: ToolSpec, **raw: Any) -> Any:
    return await spec.fn(**spec.validate(raw))


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await reader.readuntil(b"\r\n\r\n")
        if b" /moved " in request:
            head = b"HTTP/1.1 301 Moved Permanently\r\nLocation: /new\r\nContent-Length: 0\r\n"
        else:
            head = b"HTTP/1.1 200 OK\r\nServer: stand-in\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
        writer.write(head + b"Connection: close\r\n\r\nok")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest_asyncio.fixture
async def http_server() -> AsyncIterator[int]:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA and a localhost certificate valid for 30 days (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "365",
            "-subj", "/CN=Test CA", cwd=d)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost",
            cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.pem", "-days", "30", "-extfile", "ext.cnf", cwd=d)  # fmt: skip
    return d


@pytest_asyncio.fixture
async def https_server(certificates: Path) -> AsyncIterator[int]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certificates / "srv.pem", certificates / "srv.key")
    server = await asyncio.start_server(_answer, "127.0.0.1", 0, ssl=ctx)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_check_url_reports_status_latency_and_redirects(http_server: int) -> None:
    check = tools()["check_url"]
    ok = await invoke(check, url=f"http://127.0.0.1:{http_server}/health")
    assert ok["ok"] and ok["status"] == 200 and ok["server"] == "stand-in" and ok["latency_ms"] >= 0
    assert "tls" not in ok
    moved = await invoke(check, url=f"http://127.0.0.1:{http_server}/moved")
    assert moved["status"] == 301 and moved["location"] == "/new"
    down = await invoke(check, url=f"http://127.0.0.1:{closed_port()}/")
    assert down["ok"] is False and "error" in down


@pytest.mark.asyncio
async def test_check_url_reads_the_certificate_expiry(https_server: int, certificates: Path) -> None:
    trust = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
    result = await invoke(tools(tls_context=trust)["check_url"], url=f"https://localhost:{https_server}/")
    assert result["ok"] and result["status"] == 200
    assert result["tls"]["days_left"] in {29, 30}
    assert result["tls"]["subject"] == "localhost" and result["tls"]["issuer"] == "Test CA"
    # with the system trust store the private CA is unknown: a clear verification error
    untrusted = await invoke(tools()["check_url"], url=f"https://localhost:{https_server}/")
    assert untrusted["ok"] is False and "TLS certificate verification failed" in untrusted["error"]


@pytest.mark.asyncio
@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "example.com", "http://", "gopher://x"])
async def test_check_url_takes_only_http_and_https(url: str) -> None:
    with pytest.raises(ToolError, match="http:// or https://"):
        await invoke(tools()["check_url"], url=url)


@pytest.mark.asyncio
async def test_port_check_open_and_closed(http_server: int) -> None:
    check = tools()["port_check"]
    assert (await invoke(check, host="127.0.0.1", port=http_server))["open"] is True
    closed = await invoke(check, host="127.0.0.1", port=closed_port())
    assert closed["open"] is False and "refused" in closed["state"]
    with pytest.raises(ToolError, match="between 1 and 65535"):
        await invoke(check, host="127.0.0.1", port=70000)
    with pytest.raises(ToolError, match="invalid host name"):
        await invoke(check, host="-oProxyCommand=x", port=22)


@pytest.mark.asyncio
async def test_dns_lookup_uses_the_local_resolver() -> None:
    lookup = tools()["dns_lookup"]
    found = await invoke(lookup, name="localhost")
    assert found["ok"] and "127.0.0.1" in found["addresses"]
    missing = await invoke(lookup, name="no-such-host.invalid")
    assert missing["ok"] is False and "not found" in missing["error"]
    with pytest.raises(ToolError, match="not supported"):
        await invoke(lookup, name="example.com", type="MX")
    with pytest.raises(ToolError, match="invalid host name"):
        await invoke(lookup, name="a b;c")
