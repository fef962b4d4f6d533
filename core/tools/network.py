"""Network checks, read-only: fetch a URL's status, resolve a name, try a TCP port.

All of it is asyncio (httpx, the loop's resolver, open_connection) with timeouts, so a
black-holed address is a tool result, not a hang.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.errors import ToolError
from core.events import Risk
from core.tools.registry import ToolSpec, tool

DEFAULT_TIMEOUT = 10.0
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$")
_FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6, "ANY": socket.AF_UNSPEC}


def check_hostname(host: str) -> str:
    """A DNS name or an IP address literal; nothing that could be read as an option or a URL."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(text):
        raise ToolError(f"invalid host name {host!r}: expected a DNS name like example.com or an IP address")
    return text


def tls_summary(cert: dict[str, Any]) -> dict[str, Any]:
    """Expiry, days left, subject and issuer from `SSLObject.getpeercert()`."""
    expires = cert.get("notAfter")
    out: dict[str, Any] = {}
    if expires:
        seconds = ssl.cert_time_to_seconds(str(expires))
        out["expires"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))
        out["days_left"] = int((seconds - time.time()) // 86400)
    for key, name in (("subject", "subject"), ("issuer", "issuer")):
        fields = {k: v for rdn in cert.get(key, ()) for k, v in rdn}
        if fields:
            out[name] = fields.get("commonName") or fields.get("organizationName") or ""
    names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    if names:
        out["names"] = names[:10]
    return out


def _error_text(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed: {cause.verify_message or cause}"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


def network_tools(*, timeout: float = DEFAULT_TIMEOUT, tls_context: ssl.SSLContext | None = None) -> list[ToolSpec]:
    """`tls_context` replaces the system trust store (tests, or a private CA)."""

    @tool(risk=Risk.READ)
    async def check_url(url: str) -> dict[str, Any]:
        """Fetch an http(s) URL once (redirects not followed): status code, latency, and for https the
        certificate's expiry date and days left.

        Args:
            url: the address, for example "https://example.com/health".
        """
        parts = urlsplit(url.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ToolError(f"check_url takes an http:// or https:// URL with a host, not {url!r}")
        check_hostname(parts.hostname)
        result: dict[str, Any] = {"url": url.strip()}
        verify: ssl.SSLContext | bool = tls_context if tls_context is not None else True
        started = time.monotonic()
        try:
            async with (
                httpx.AsyncClient(timeout=timeout, verify=verify, follow_redirects=False, trust_env=False) as client,
                client.stream("GET", url.strip(), headers={"User-Agent": "ai-orchestrator check_url"}) as response,
            ):
                result["status"] = response.status_code
                result["reason"] = response.reason_phrase
                result["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
                result["http_version"] = response.http_version
                for header in ("location", "server", "content-type"):
                    if header in response.headers:
                        result[header.replace("-", "_")] = response.headers[header]
                stream = response.extensions.get("network_stream")
                ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
                if ssl_object is not None:
                    result["tls"] = {"version": ssl_object.version(), **tls_summary(ssl_object.getpeercert() or {})}
        except httpx.HTTPError as exc:
            result["ok"] = False
            result["error"] = _error_text(exc)
            result["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
            return result
        result["ok"] = result["status"] < 400
        return result

    @tool(risk=Risk.READ)
    async def dns_lookup(name: str, type: str = "A") -> dict[str, Any]:
        """Resolve a host name with this machine's resolver (as its programs see it).

        Args:
            name: the host name, for example "example.com"; an IP address gives its reverse (PTR) name.
            type: "A" (IPv4), "AAAA" (IPv6), "ANY" (both) or "PTR" (reverse lookup of an address).
        """
        kind = type.strip().upper()
        host = check_hostname(name)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        if kind == "PTR" or (kind == "A" and _is_ip(host)):
            if not _is_ip(host):
                raise ToolError("a PTR lookup takes an IP address")
            try:
                primary, aliases, _ = await asyncio.wait_for(asyncio.to_thread(socket.gethostbyaddr, host), timeout)
            except (OSError, TimeoutError) as exc:
                return {"name": host, "type": "PTR", "ok": False, "error": _resolver_error(exc)}
            return {"name": host, "type": "PTR", "ok": True, "names": [primary, *aliases]}
        if kind not in _FAMILIES:
            raise ToolError(
                f"record type {type!r} is not supported here (A, AAAA, ANY, PTR); "
                "for MX or TXT use run_command with dig"
            )
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, family=_FAMILIES[kind], type=socket.SOCK_STREAM), timeout
            )
        except (OSError, TimeoutError) as exc:
            return {"name": host, "type": kind, "ok": False, "error": _resolver_error(exc)}
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        return {
            "name": host,
            "type": kind,
            "ok": True,
            "addresses": addresses,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
        }

    @tool(risk=Risk.READ)
    async def port_check(host: str, port: int) -> dict[str, Any]:
        """Try to open a TCP connection: is the port open, refused, or silent (filtered)?

        Args:
            host: host name or IP address.
            port: TCP port number (1 to 65535).
        """
        target = check_hostname(host)
        if not 0 < port < 65536:
            raise ToolError("port must be between 1 and 65535")
        started = time.monotonic()
        result: dict[str, Any] = {"host": target, "port": port}
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(target, port), timeout)
        except TimeoutError:
            result.update(open=False, state="no answer (filtered or host down)", timeout_s=timeout)
            return result
        except ConnectionRefusedError:
            result.update(open=False, state="refused (nothing listening)")
        except OSError as exc:
            result.update(open=False, state=f"error: {exc.strerror or exc}")
        else:
            result.update(open=True, state="open")
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        result["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        return result

    return [check_url, dns_lookup, port_check]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _resolver_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the resolver did not answer in time"
    if isinstance(exc, socket.gaierror | socket.herror):
        return f"not found ({exc.strerror or exc})"
    return str(exc)
