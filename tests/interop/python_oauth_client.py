"""The official Python MCP SDK does the whole OAuth journey against 1nce-mcp by itself.

Usage: python_oauth_client.py MODE SERVER_URL SUBJECT
  MODE        "legacy" (initialize handshake, a session) or "auto" (server/discover, stateless)
  SERVER_URL  the MCP endpoint of a server in OAuth resource-server mode (--oauth-issuer)
  SUBJECT     who logs in at the authorization server's login page

Nothing about the authorization server is given to the SDK: its `OAuthClientProvider` (an
`httpx2.Auth`) meets the server's 401, reads the protected resource metadata, the authorization
server's metadata, registers a client dynamically, and runs the authorization code flow with
PKCE. This script only plays the two parts the SDK leaves to its host application:

- the person (`redirect_handler`): opens the authorization URL in a "browser" (an httpx2 client
  with a cookie jar), logs in as SUBJECT and consents on oidc-provider's built-in pages, and
  stops at the redirect to the registered redirect URI. The first time the person grants read
  access only (orders:write withheld), as on a consent screen where a permission is unticked;
  oidc-provider's development pages have no such boxes, so the person takes the scope out of
  the request instead, and the authorization server then grants, and says it granted, less than
  the SDK asked for. Later authorizations are consented as asked.
- the redirect URI's listener (`callback_handler`): hands back the code, state and iss that
  the redirect carried.

Then, as that read-only person: the tools (create_order must not be listed), list_orders, and
create_order, which the server refuses with 403 insufficient_scope. The installed SDK (mcp 2.3)
answers such a 403 by re-authorizing with the union of its scopes and the challenged one
(SEP-2350 step-up) and retrying the request, so the call must end in a preview. An SDK that did
not step up would raise here instead, and this script would fail saying so.

Prints one JSON line: what the SDK sent where, and what it got. Exits non-zero with a message
on any failure; every network step has a deadline.
"""

import asyncio
import base64
import json
import sys
import traceback
from html.parser import HTMLParser
from importlib.metadata import version
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

# Nothing listens here: the person's browser stops at the redirect and reads the code from it.
REDIRECT_URI = "http://127.0.0.1:9/callback"
# The scope the person will not grant the first time.
WITHHELD = "orders:write"
# One HTTP request of the person's browser, and of the SDK's client.
REQUEST_TIMEOUT = 20
# The whole journey; the Rust test gives the script 120 s.
JOURNEY_TIMEOUT = 100


def check(condition, message):
    if not condition:
        raise Failure(message)


class Failure(Exception):
    pass


class MemoryStorage:
    """The SDK's `TokenStorage` protocol, in memory: nothing outlives the script."""

    def __init__(self):
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Form(HTMLParser):
    """The first form of a page: its action, and its inputs that have a name and a value."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = []
        self.depth = 0  # 1 inside the first form, 2 after it

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.depth == 0:
            self.action = attrs.get("action")
            self.depth = 1
        elif tag == "input" and self.depth == 1 and "name" in attrs and "value" in attrs:
            self.fields.append((attrs["name"], attrs["value"] or ""))

    def handle_endtag(self, tag):
        if tag == "form" and self.depth == 1:
            self.depth = 2


def without_query(url):
    parts = urlsplit(str(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class Person:
    """The `redirect_handler` and `callback_handler` of the SDK: a person at a browser."""

    def __init__(self, subject):
        self.subject = subject
        # A browser: one cookie jar for every authorization, redirects followed by hand.
        self.browser = httpx2.AsyncClient(follow_redirects=False, timeout=REQUEST_TIMEOUT)
        self.result: AuthorizationCodeResult | None = None
        self.authorizations = []

    async def redirect_handler(self, authorization_url: str) -> None:
        self.result = None
        url = urlsplit(authorization_url)
        asked = {k: v[0] for k, v in parse_qs(url.query).items()}
        record = {
            "endpoint": without_query(authorization_url),
            "params": sorted(asked),
            "scope_asked": asked.get("scope"),
            "resource": asked.get("resource"),
            "code_challenge_method": asked.get("code_challenge_method"),
            "prompt": asked.get("prompt"),
        }
        granted = asked.get("scope", "")
        if not self.authorizations:
            # The first time, the person grants read access only (see the module's doc).
            granted = " ".join(s for s in granted.split() if s != WITHHELD)
            asked["scope"] = granted
            authorization_url = urlunsplit(url._replace(query=urlencode(asked)))
        record["scope_consented"] = granted
        self.authorizations.append(record)
        self.result, record["pages"] = await self.authorize(authorization_url)
        record["iss_returned"] = self.result.iss

    async def callback_handler(self) -> AuthorizationCodeResult:
        check(self.result is not None, "the SDK asked for the callback before any redirect")
        result, self.result = self.result, None
        return result

    async def authorize(self, url):
        """Follows the authorization server's pages until the redirect to REDIRECT_URI."""
        target = urlsplit(REDIRECT_URI)
        pages = []
        response = await self.browser.get(url)
        # Login, consent and the redirects between them take about six steps; more is a loop.
        for _ in range(12):
            if response.is_redirect:
                location = urljoin(url, response.headers["location"])
                there = urlsplit(location)
                if (there.scheme, there.netloc, there.path) == (target.scheme, target.netloc, target.path):
                    query = {k: v[0] for k, v in parse_qs(there.query).items()}
                    if "error" in query:
                        raise Failure(
                            f"the authorization server refused: {query['error']}: "
                            f"{query.get('error_description', '')}"
                        )
                    check("code" in query, f"no code in the redirect to {without_query(location)}")
                    return (
                        AuthorizationCodeResult(
                            code=query["code"], state=query.get("state"), iss=query.get("iss")
                        ),
                        pages,
                    )
                url = location
                response = await self.browser.get(url)
                continue
            check(
                response.status_code == 200,
                f"{response.status_code} from {without_query(url)}: {response.text[:500]}",
            )
            form = Form()
            form.feed(response.text)
            check(form.action is not None, f"no form at {without_query(url)}: {response.text[:500]}")
            fields = form.fields
            prompt = dict(fields).get("prompt")
            pages.append(prompt)
            if prompt == "login":
                # oidc-provider's devInteractions take any password.
                fields = [("prompt", "login"), ("login", self.subject), ("password", "x")]
            url = urljoin(url, form.action)
            response = await self.browser.post(url, data=dict(fields))
        raise Failure(f"no redirect to {REDIRECT_URI} after 12 steps, at {without_query(url)}")


class Trace:
    """Every request the SDK's HTTP client sends (auth flow included), without secrets: the
    form fields' names (and the values of grant_type, resource and scope) of token requests,
    the JSON bodies of requests to the authorization server (registration)."""

    def __init__(self, server_url):
        self.server_url = server_url
        self.requests = []

    async def on_request(self, request: httpx2.Request):
        entry = {"method": request.method, "url": without_query(request.url)}
        kind = request.headers.get("content-type", "")
        if request.method == "POST" and kind.startswith("application/x-www-form-urlencoded"):
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            entry["form"] = sorted(form)
            for shown in ("grant_type", "resource", "scope"):
                if shown in form:
                    entry[shown] = form[shown]
        elif request.method == "POST" and without_query(request.url) != self.server_url:
            entry["json"] = json.loads(request.content)
        self.requests.append(entry)

    async def on_response(self, response: httpx2.Response):
        # The entry of this response's request: the last one sent to that URL.
        for entry in reversed(self.requests):
            if entry["url"] == without_query(response.request.url) and "status" not in entry:
                entry["status"] = response.status_code
                challenge = response.headers.get("www-authenticate")
                if challenge:
                    entry["www_authenticate"] = challenge
                break


def claims(token: str):
    """The payload of a JWT access token, not verified (the server does that)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def journey(mode, server_url, subject):
    person = Person(subject)
    storage = MemoryStorage()
    trace = Trace(server_url)
    provider = OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata(
            client_name="1nce-mcp interop: python SDK",
            redirect_uris=[REDIRECT_URI],
            # What this client would like; the SDK may choose otherwise (the challenge's scope).
            scope="orders:read",
        ),
        storage=storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
    )
    http = httpx2.AsyncClient(
        auth=provider,
        timeout=httpx2.Timeout(REQUEST_TIMEOUT, read=60),
        event_hooks={"request": [trace.on_request], "response": [trace.on_response]},
    )
    report = {"mode": mode, "subject": subject, "sdk": version("mcp")}
    async with person.browser, http:
        transport = streamable_http_client(server_url, http_client=http)
        async with Client(transport, mode=mode, raise_exceptions=True, read_timeout_seconds=60) as client:
            report["protocol_version"] = client.protocol_version
            check(storage.tokens is not None, "connected without a token")
            report["read_token"] = token_report(storage.tokens)

            names = sorted(t.name for t in (await client.list_tools(cache_mode="bypass")).tools)
            report["read_tools"] = names
            check("list_orders" in names, f"a reader's tools lack list_orders: {names}")
            check("create_order" not in names, f"a reader is offered create_order: {names}")

            page = await client.call_tool("list_orders", {"page_size": 2})
            check(not page.is_error, f"list_orders failed: {page.content}")
            report["list_orders"] = len(page.structured_content["orders"])

            # Beyond the reader's scope: 403 insufficient_scope, answered by the SDK's step-up.
            authorized_before = len(person.authorizations)
            args = {"products": [{"product_id": 1001, "quantity": 1}], "customer_reference": "python-oauth"}
            try:
                preview = await client.call_tool("create_order", args)
            except Exception as e:  # noqa: BLE001 - reported, then failed on
                raise Failure(
                    f"create_order beyond the token's scope raised {type(e).__name__}: {e} "
                    "(the SDK did not step up)"
                ) from e
            check(
                len(person.authorizations) == authorized_before + 1,
                f"create_order succeeded without a new authorization: {person.authorizations}",
            )
            check(not preview.is_error, f"create_order after the step-up failed: {preview.content}")
            report["step_up"] = {
                "preview_status": preview.structured_content["status"],
                "token": token_report(storage.tokens),
            }
            names = sorted(t.name for t in (await client.list_tools(cache_mode="bypass")).tools)
            report["tools_after_step_up"] = names
    report["authorizations"] = person.authorizations
    report["requests"] = trace.requests
    report["registered"] = storage.client_info.model_dump(
        mode="json", include={"token_endpoint_auth_method", "grant_types", "scope", "redirect_uris"}
    )
    return report


def token_report(tokens: OAuthToken):
    c = claims(tokens.access_token)
    return {
        "scope": tokens.scope,
        "has_refresh_token": tokens.refresh_token is not None,
        "claims": {k: c.get(k) for k in ("iss", "aud", "sub", "scope", "client_id")},
    }


async def main():
    mode, server_url, subject = sys.argv[1:]
    with anyio.fail_after(JOURNEY_TIMEOUT):
        return await journey(mode, server_url, subject)


def leaves(e):
    """The exceptions at the bottom of (anyio's) exception groups."""
    # Duck-typed: on Python 3.10 anyio raises the `exceptiongroup` backport's groups.
    if isinstance(getattr(e, "exceptions", None), (list, tuple)):
        return [leaf for inner in e.exceptions for leaf in leaves(inner)]
    return [e]


if __name__ == "__main__":
    try:
        print(json.dumps(asyncio.run(main())))
    except BaseException as e:  # noqa: BLE001 - every failure exits non-zero with its story
        causes = leaves(e)
        if not all(isinstance(c, Failure) for c in causes):
            traceback.print_exc()
        sys.exit("python OAuth interop failure: " + "; ".join(f"{type(c).__name__}: {c}" for c in causes))
