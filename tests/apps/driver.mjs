// Drives the test host (host.html + host.js, sandbox.html) in headless Chromium with
// playwright-core, against a running 1nce-mcp server, and prints ONE line of JSON with what it
// saw. tests/order_card.rs starts the server and a sandbox, runs this, and asserts on that line;
// this script decides nothing itself beyond "the page did what was asked".
//
//   node tests/apps/driver.mjs --mcp http://127.0.0.1:P/mcp --host-port N [--shots DIR]
//        [--scenario full|sandbox] [--bench N]
//
// Environment: ONCE_APPS_HOST (scripts/apps-setup's directory: node_modules and dist/host.js),
// ONCE_APPS_CHROMIUM (default /usr/bin/chromium). The host page is served on
// http://127.0.0.1:<host-port> (the server must allow that origin), the sandbox proxy on
// http://localhost:<another port>: two origins, as the spec asks of a web host.

import { createServer } from "node:http";
import { createRequire } from "node:module";
import { readFileSync, statSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const setup = process.env.ONCE_APPS_HOST;
if (!setup) fail("setup", "ONCE_APPS_HOST is not set: run eval \"$(scripts/apps-setup)\"");
const bundle = join(setup, "dist", "host.js");
if (statSync(bundle).mtimeMs < statSync(join(here, "host.js")).mtimeMs) {
  fail("setup", "dist/host.js is older than tests/apps/host.js: run scripts/apps-setup again");
}
const { chromium } = createRequire(join(setup, "node_modules", "/"))("playwright-core");

const { values: opt } = parseArgs({
  options: {
    mcp: { type: "string" },
    "host-port": { type: "string" },
    shots: { type: "string" },
    bench: { type: "string" },
    scenario: { type: "string", default: "full" },
  },
});

function fail(stage, error) {
  process.stdout.write(JSON.stringify({ ok: false, stage, error: String(error && (error.stack || error)) }) + "\n");
  process.exit(1);
}

// The view's CSP (spec 2026-01-26, "Sandbox proxy" and "Content Security Policy Enforcement"):
// the restrictive default for every list the resource leaves empty. The same rule as in
// sandbox.html, which injects it again as a meta element.
function policy(csp) {
  const list = (v) => (Array.isArray(v) ? v.filter((d) => /^[a-z0-9*:/.\-[\]]+$/i.test(d)) : []);
  const res = list(csp && csp.resourceDomains).join(" ");
  const con = list(csp && csp.connectDomains).join(" ");
  const frm = list(csp && csp.frameDomains).join(" ");
  const base = list(csp && csp.baseUriDomains).join(" ");
  return [
    "default-src 'none'",
    `script-src 'self' 'unsafe-inline' ${res}`.trim(),
    `style-src 'self' 'unsafe-inline' ${res}`.trim(),
    `img-src 'self' data: ${res}`.trim(),
    `media-src 'self' data: ${res}`.trim(),
    res ? `font-src 'self' ${res}` : "font-src 'self'",
    con ? `connect-src ${con}` : "connect-src 'none'",
    // The proxy's own srcdoc child: about:srcdoc is not fetched, so this does not stop it.
    frm ? `frame-src ${frm}` : "frame-src 'none'",
    "object-src 'none'",
    base ? `base-uri ${base}` : "base-uri 'self'",
  ].join("; ");
}

function listen(handler) {
  return new Promise((resolve) => {
    const server = createServer(handler);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

async function serve(hostPort) {
  const send = (res, type, body, headers = {}) => {
    res.writeHead(200, { "content-type": type, "cache-control": "no-store", ...headers });
    res.end(body);
  };
  const host = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/") return send(res, "text/html; charset=utf-8", readFileSync(join(here, "host.html")));
    if (path === "/host.js") return send(res, "text/javascript; charset=utf-8", readFileSync(bundle));
    res.writeHead(404).end();
  });
  await new Promise((resolve, reject) => {
    host.once("error", reject);
    host.listen(Number(hostPort), "127.0.0.1", resolve);
  });
  const sandbox = await listen((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname !== "/sandbox.html") return res.writeHead(404).end();
    let csp = {};
    try {
      csp = JSON.parse(url.searchParams.get("csp") || "{}");
    } catch {}
    send(res, "text/html; charset=utf-8", readFileSync(join(here, "sandbox.html")), {
      "content-security-policy": policy(csp),
    });
  });
  return { host, sandbox, sandboxUrl: `http://localhost:${sandbox.address().port}/sandbox.html` };
}

// Orders the scenarios use. The markup one puts HTML and script where a person's name goes.
const A = {
  products: [
    { product_id: 1001, quantity: 5 },
    { product_id: 1003, quantity: 20 },
  ],
  delivery_address: {
    salutation: "2",
    first_name: "Ada",
    last_name: "Lovelace",
    company: "Analytical Engines GmbH",
    street: "Friedrichstraße",
    house_number: "123",
    address_line2: "3rd floor, rear building",
    zip: "10117",
    city: "Berlin",
    country: "DE",
    phone: "+49 30 1234567",
  },
  customer_reference: "card-a fleet 7",
};
const B = { products: [{ product_id: 1002, quantity: 3 }], customer_reference: "card-b declined" };
const MARKUP = {
  first_name: '<img src=x onerror="window.__pwned=1">',
  last_name: "</script><script>window.__pwned=2</script>",
  company: "<b>Bold & \"quoted\" 'co'</b>",
  street: "<svg onload=window.__pwned=3>",
  house_number: "1<br>2",
  address_line2: "&lt;entity&gt; &amp; <!-- comment -->",
  zip: "10117",
  city: "<iframe src=javascript:top.__pwned=4></iframe>",
  country: "DE",
  phone: "+49 <a href=x>30</a>",
};
const C = {
  products: [{ product_id: 1001, quantity: 1 }],
  delivery_address: MARKUP,
  customer_reference: "<script>window.__pwned=5</script>",
};
const PLAIN = { products: [{ product_id: 1001, quantity: 2 }], customer_reference: "plain client" };

const WIDTHS = [600, 360];
const THEMES = ["light", "dark"];

async function main() {
  const { host, sandbox, sandboxUrl } = await serve(opt["host-port"]);
  const browser = await chromium.launch({
    executablePath: process.env.ONCE_APPS_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    chromiumSandbox: false,
    args: [
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 640, height: 1400 }, deviceScaleFactor: 2 });
  const consoleErrors = [];
  const dialogs = [];
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(`${m.location().url || "?"}: ${m.text()}`);
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  const hostUrl = new URL(`http://127.0.0.1:${opt["host-port"]}/`);
  hostUrl.searchParams.set("mcp", opt.mcp);
  hostUrl.searchParams.set("sandbox", sandboxUrl);
  await page.goto(hostUrl.href);
  await page.waitForSelector("html[data-ready='1']");

  const ctx = { page, consoleErrors, dialogs };
  try {
    const report = opt.bench
      ? await bench(ctx, Number(opt.bench))
      : opt.scenario === "sandbox"
        ? await sandboxScenario(ctx)
        : await scenario(ctx);
    process.stdout.write(JSON.stringify({ ok: true, ...report }) + "\n");
  } catch (e) {
    const cards = await page.evaluate(() => window.host.cards()).catch((e) => String(e));
    process.stdout.write(
      JSON.stringify({ ok: false, stage: "scenario", error: String(e && (e.stack || e)), cards, console_errors: consoleErrors }) + "\n",
    );
    process.exitCode = 1;
  } finally {
    await browser.close();
    host.close();
    sandbox.close();
  }
}

/** The view's document inside card `index` (outer proxy frame, then the view's frame). */
async function viewOf(page, index) {
  if (index == null) throw new Error("create_order named no view (no _meta.ui.resourceUri): the server did not offer this host the order card");
  const outer = await (await page.waitForSelector(`#card-${index} iframe`)).contentFrame();
  const inner = await (await outer.waitForSelector("iframe", { state: "attached" })).contentFrame();
  await inner.waitForSelector("#card[data-state]:not([data-state=''])");
  return inner;
}

/** Everything the card shows, read from its DOM (text as the person sees it). */
function read(view) {
  return view.evaluate(() => {
    const $ = (s) => document.querySelector(s);
    const text = (s) => ($(s) ? $(s).innerText : null);
    return {
      state: $("#card").dataset.state,
      text: document.body.innerText,
      env: $("#env") ? $("#env").dataset.env : null,
      badge: text("#env b"),
      env_text: text("#env"),
      account: text("#acct"),
      lines: [...document.querySelectorAll("#lines li")].map((li) => li.innerText),
      total: text("#total"),
      ship: Object.fromEntries([...document.querySelectorAll("#ship dd")].map((d) => [d.dataset.k, d.textContent])),
      same: text("#same"),
      countdown: text("#countdown"),
      place: $("#place") ? { enabled: !$("#place").disabled, text: $("#place").textContent } : null,
      decline: $("#decline") ? { enabled: !$("#decline").disabled } : null,
      outcome: $("#out") ? $("#out").dataset.outcome : null,
      out_text: text("#out"),
      out_fields: Object.fromEntries([...document.querySelectorAll("#out dd")].map((d) => [d.dataset.k, d.textContent])),
      theme: document.documentElement.dataset.theme,
      images: document.images.length,
      scripts: document.scripts.length,
      iframes: document.querySelectorAll("iframe").length,
      title: document.title,
      pwned: window.__pwned === undefined ? null : window.__pwned,
      csp_meta: $("meta[http-equiv='Content-Security-Policy']")
        ? $("meta[http-equiv='Content-Security-Policy']").content : null,
    };
  });
}

/** Whether the view can reach the network (it must not: connect-src 'none'). */
function tryNetwork(view, url) {
  return view.evaluate(async (url) => {
    const violations = [];
    document.addEventListener("securitypolicyviolation", (e) => violations.push(e.effectiveDirective));
    let fetched;
    try {
      await fetch(url, { method: "POST", body: "{}" });
      fetched = "answered";
    } catch (e) {
      fetched = `refused: ${e}`;
    }
    await new Promise((r) => setTimeout(r, 50));
    return { fetched, violations };
  }, url);
}

async function settle(page, index) {
  // Wait until the host has applied the view's last reported height.
  await page.locator(`#card-${index}`).scrollIntoViewIfNeeded();
  await page.waitForTimeout(150);
  await page.waitForFunction(
    (i) => {
      const c = window.host.card(i);
      const h = c.sizes[c.sizes.length - 1];
      const f = document.querySelector(`#card-${i} iframe`);
      return h != null && Math.abs(f.getBoundingClientRect().height - h) < 1;
    },
    index,
  );
}

async function shots(page, index, label) {
  const out = [];
  if (!opt.shots) return out;
  mkdirSync(opt.shots, { recursive: true });
  for (const width of WIDTHS) {
    for (const theme of THEMES) {
      await page.evaluate(([w, t]) => {
        window.host.setWidth(w);
        window.host.setTheme(t);
      }, [width, theme]);
      await settle(page, index);
      const path = join(opt.shots, `order-card-${label}-${theme}-${width}.png`);
      await page.locator(`#card-${index}`).screenshot({ path });
      out.push(path);
    }
  }
  await page.evaluate(() => {
    window.host.setWidth(600);
    window.host.setTheme("light");
  });
  await settle(page, index);
  return out;
}

/** Click-to-outcome in the view's own clock: from the click event to #out in the DOM. */
async function clickAndTime(view, button, how = "click") {
  await view.evaluate((id) => {
    window.__t = {};
    document.getElementById(id).addEventListener("click", () => (window.__t.click ??= performance.now()), { capture: true });
    new MutationObserver((_, obs) => {
      if (document.getElementById("out")) {
        window.__t.out = performance.now();
        obs.disconnect();
      }
    }).observe(document.body, { childList: true, subtree: true });
  }, button);
  await view.locator(`#${button}`)[how]();
  await view.waitForSelector("#out");
  return view.evaluate(() => window.__t.out - window.__t.click);
}

const preview = (page, args) => page.evaluate((a) => window.host.modelCall("create_order", a), args);
const appCall = (page, name, args) => page.evaluate(([n, a]) => window.host.appCall(n, a), [name, args]);
const modelCall = (page, name, args) =>
  page.evaluate(async ([n, a]) => {
    const r = await window.host.modelCall(n, a);
    return r.model_sees;
  }, [name, args]);

async function scenario({ page, consoleErrors, dialogs }) {
  const report = {};
  report.tools = await page.evaluate(() => window.host.connect());

  // A: preview, read, screenshots, double-click Place order, read, screenshots, replay.
  const a = (report.a = {});
  const pa = await preview(page, A);
  a.result = pa.result;
  a.model_sees = pa.model_sees;
  let view = await viewOf(page, pa.card);
  a.preview = await read(view);
  a.network = await tryNetwork(view, opt.mcp);
  a.shots = await shots(page, pa.card, "live-preview");
  a.click_to_outcome_ms = await clickAndTime(view, "place", "dblclick");
  a.placed = await read(view);
  a.shots.push(...(await shots(page, pa.card, "live-placed")));
  a.card = await page.evaluate((i) => window.host.card(i), pa.card);
  const nonceA = pa.result._meta && pa.result._meta["onence/order-card"] && pa.result._meta["onence/order-card"].approval_nonce;
  const answer = (args, result, nonce, decision) => ({
    ...args,
    confirmation_token: result.structuredContent.confirmation_token,
    approval_nonce: nonce,
    decision,
  });
  a.replay = await appCall(page, "answer_order_card", answer(A, pa.result, nonceA, "place"));
  a.after_replay = await read(view);
  // The chat reloads and shows the same preview's card again: its click is refused.
  const again = await page.evaluate((i) => window.host.rerender(i), pa.card);
  const reloaded = await viewOf(page, again);
  a.reloaded = await read(reloaded);
  await clickAndTime(reloaded, "place");
  a.reloaded_clicked = await read(reloaded);

  // B: a preview declined in the card, then its token tried by the model and by the app.
  const b = (report.b = {});
  const pb = await preview(page, B);
  b.result = pb.result;
  view = await viewOf(page, pb.card);
  b.preview = await read(view);
  await clickAndTime(view, "decline");
  b.declined = await read(view);
  b.card = await page.evaluate((i) => window.host.card(i), pb.card);
  b.token_after_decline = await modelCall(page, "create_order", {
    ...B,
    confirmation_token: pb.result.structuredContent.confirmation_token,
  });
  const nonceB = pb.result._meta && pb.result._meta["onence/order-card"] && pb.result._meta["onence/order-card"].approval_nonce;
  b.place_after_decline = await appCall(page, "answer_order_card", answer(B, pb.result, nonceB, "place"));

  // C: markup and script in every address field; the model's token alone; a forged nonce; expiry.
  const c = (report.c = { sent: C });
  const pc = await preview(page, C);
  c.result = pc.result;
  view = await viewOf(page, pc.card);
  c.preview = await read(view);
  c.token_alone = await modelCall(page, "create_order", {
    ...C,
    confirmation_token: pc.result.structuredContent.confirmation_token,
  });
  const nonceC = pc.result._meta && pc.result._meta["onence/order-card"] && pc.result._meta["onence/order-card"].approval_nonce;
  const forged = nonceC ? (nonceC[0] === "A" ? "B" : "A") + nonceC.slice(1) : "forged";
  c.forged_nonce = await appCall(page, "answer_order_card", answer(C, pc.result, forged, "place"));
  c.no_nonce_field = await appCall(page, "answer_order_card", answer(C, pc.result, undefined, "place"));
  c.nonce_of_a = await appCall(page, "answer_order_card", answer(C, pc.result, nonceA, "place"));
  // Eleven minutes on the view's clock: the countdown ends and Place order goes grey.
  await view.evaluate(() => {
    const now = Date.now.bind(Date);
    Date.now = () => now() + 11 * 60 * 1000;
  });
  await view.waitForSelector("#card[data-state=expired]", { timeout: 5000 });
  c.expired = await read(view);

  // E: the same order as A again: the card warns about the identical order just placed.
  const e = (report.e = {});
  const pe = await preview(page, A);
  view = await viewOf(page, pe.card);
  e.preview = await read(view);
  e.shots = await shots(page, pe.card, "live-identical");

  // A client without the extension.
  report.plain = await page.evaluate((a) => window.host.plainClient(a), PLAIN);

  report.console_errors = [...new Set(consoleErrors)];
  report.dialogs = dialogs;
  return report;
}

/** Against `--sandbox`: what the card says there, placed with one click, in pictures. */
async function sandboxScenario({ page, consoleErrors, dialogs }) {
  const report = { tools: await page.evaluate(() => window.host.connect()) };
  const p = await preview(page, A);
  report.result = p.result;
  const view = await viewOf(page, p.card);
  report.preview = await read(view);
  report.shots = await shots(page, p.card, "sandbox-preview");
  await clickAndTime(view, "place");
  report.placed = await read(view);
  report.shots.push(...(await shots(page, p.card, "sandbox-placed")));
  report.console_errors = [...new Set(consoleErrors)];
  report.dialogs = dialogs;
  return report;
}

async function bench({ page }, n) {
  await page.evaluate(() => window.host.connect());
  const times = [];
  let bytes = null;
  for (let i = 0; i < n; i++) {
    const p = await preview(page, { products: [{ product_id: 1001, quantity: 1 }], customer_reference: `bench ${i}` });
    const view = await viewOf(page, p.card);
    const ms = await clickAndTime(view, "place");
    const outcome = await view.evaluate(() => document.getElementById("out").dataset.outcome);
    if (outcome !== "placed") throw new Error(`bench order ${i}: ${outcome}`);
    times.push(ms);
    bytes ??= (await page.evaluate((i) => window.host.card(i), p.card)).html_bytes;
  }
  const sorted = [...times].sort((x, y) => x - y);
  return {
    bench: {
      card_bytes: bytes,
      runs: n,
      click_to_placed_ms: times.map((t) => Math.round(t * 10) / 10),
      median_ms: Math.round(((sorted[(n - 1) >> 1] + sorted[n >> 1]) / 2) * 10) / 10,
    },
  };
}

main().catch((e) => fail("driver", e));
