// A web MCP Apps host, small but real, for tests/order_card.rs: the official MCP client
// (@modelcontextprotocol/client) connected to the server over Streamable HTTP, declaring the
// `io.modelcontextprotocol/ui` extension, and the official host SDK (`AppBridge` from
// @modelcontextprotocol/ext-apps) rendering each tool's view the way the spec asks of a web host:
// an outer "sandbox proxy" iframe on another origin (sandbox.html), which loads the view's HTML
// into an inner sandboxed iframe under the resource's CSP.
//
// It plays both parts a chat host plays: the agent's (`modelTools`, `modelCall`: only the tools
// whose visibility includes "model", and only `content`/`structuredContent` of a result) and the
// view's (`appCall`: the path a view's `tools/call` takes, refused for tools without "app").
// driver.mjs calls these through `window.host`. scripts/apps-setup bundles this file with esbuild.

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import {
  AppBridge,
  PostMessageTransport,
  RESOURCE_MIME_TYPE,
  getToolUiResourceUri,
} from "@modelcontextprotocol/ext-apps/app-bridge";

const UI_EXTENSION = "io.modelcontextprotocol/ui";
const query = new URLSearchParams(location.search);
const SERVER = query.get("mcp");
const SANDBOX = query.get("sandbox");
const HOST_INFO = { name: "onence-test-host", version: "1.0.0" };

/** Who may see and call a tool, as the spec defines `_meta.ui.visibility` (default both). */
function visibility(tool) {
  const v = tool && tool._meta && tool._meta.ui && tool._meta.ui.visibility;
  return Array.isArray(v) ? v : ["model", "app"];
}

async function connect(withExtension) {
  const capabilities = withExtension
    ? { extensions: { [UI_EXTENSION]: { mimeTypes: [RESOURCE_MIME_TYPE] } } }
    : {};
  const client = new Client(HOST_INFO, { capabilities });
  await client.connect(new StreamableHTTPClientTransport(new URL(SERVER)));
  const { tools } = await client.listTools();
  return { client, tools };
}

const state = {
  theme: "light",
  width: 600,
  client: null,
  tools: [],
  cards: [],
};

function hostContext() {
  return {
    theme: state.theme,
    platform: "web",
    displayMode: "inline",
    availableDisplayModes: ["inline"],
    locale: "en-GB",
    timeZone: "Europe/Berlin",
    containerDimensions: { maxHeight: 4000 },
  };
}

/** The view's `tools/call`, as this host lets it through: app-visible tools of the same server. */
async function appCall(params) {
  const tool = state.tools.find((t) => t.name === params.name);
  if (!tool || !visibility(tool).includes("app")) {
    throw new Error(`tool ${params.name} is not callable by apps`);
  }
  return state.client.callTool(params);
}

/** Renders `uri` for one tool call: resources/read, the sandbox proxy, then AppBridge. */
async function render(uri, toolArguments, resultPromise) {
  const read = await state.client.readResource({ uri });
  const content = read.contents.find((c) => c.uri === uri) || read.contents[0];
  if (!content || content.mimeType !== RESOURCE_MIME_TYPE) {
    throw new Error(`resource ${uri} is not ${RESOURCE_MIME_TYPE}: ${content && content.mimeType}`);
  }
  const html =
    typeof content.text === "string"
      ? content.text
      : new TextDecoder().decode(Uint8Array.from(atob(content.blob), (c) => c.charCodeAt(0)));
  const ui = (content._meta && content._meta.ui) || {};

  const index = state.cards.length;
  const box = document.createElement("div");
  box.className = "card";
  box.id = `card-${index}`;
  if (ui.prefersBorder) box.classList.add("bordered");
  const frame = document.createElement("iframe");
  frame.title = `view ${index}`;
  // The proxy must run scripts on its own origin; the view inside it gets less (sandbox.html).
  frame.setAttribute("sandbox", "allow-scripts allow-same-origin");
  box.append(frame);
  document.getElementById("cards").append(box);
  // As a chat scrolls to its newest message. (Chromium does not lay out a cross-origin frame
  // that is out of view, so a view below the fold would not measure itself.)
  box.scrollIntoView({ block: "end" });

  const card = {
    index,
    uri,
    args: toolArguments,
    html_bytes: new TextEncoder().encode(html).length,
    csp: ui.csp || null,
    initialized: false,
    sizes: [],
    model_context: [],
    app_calls: [],
    logs: [],
    errors: [],
  };
  const bridge = new AppBridge(
    state.client,
    HOST_INFO,
    {
      serverTools: {},
      serverResources: {},
      logging: {},
      updateModelContext: { text: {} },
      sandbox: { csp: ui.csp || {} },
    },
    { hostContext: hostContext() },
  );
  bridge.onupdatemodelcontext = async (params) => {
    card.model_context.push(params);
    return {};
  };
  bridge.onloggingmessage = (params) => card.logs.push(params);
  bridge.onmessage = async () => ({});
  bridge.onsizechange = ({ height }) => {
    card.sizes.push(height);
    if (height != null) frame.style.height = `${height}px`;
  };
  bridge.onsandboxready = () => {
    bridge.sendSandboxResourceReady({ html, csp: ui.csp, permissions: ui.permissions });
  };
  bridge.oninitialized = async () => {
    card.initialized = true;
    await bridge.sendToolInput({ arguments: toolArguments });
    const result = await resultPromise;
    card.result = result;
    await bridge.sendToolResult(result);
    card.result_sent = true;
  };
  card.bridge = bridge;
  state.cards.push(card);

  await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
  // After connect(), which installs a plain forwarder for tools/call when given a client: this
  // host lets a view call only the tools whose visibility includes "app".
  bridge.oncalltool = async (params) => {
    card.app_calls.push({ name: params.name, decision: params.arguments && params.arguments.decision });
    return appCall(params);
  };
  // The proxy's own CSP comes from its HTTP header, built from the resource's declaration; the
  // view inside it (an about:srcdoc document) inherits that policy.
  const src = new URL(SANDBOX);
  src.searchParams.set("csp", JSON.stringify(ui.csp || {}));
  frame.src = src.href;
  return index;
}

window.host = {
  /** Connects the host's MCP client; returns what the model and the raw listing show. */
  async connect() {
    const { client, tools } = await connect(true);
    state.client = client;
    state.tools = tools;
    return {
      raw: tools.map((t) => ({ name: t.name, meta_ui: (t._meta && t._meta.ui) || null })),
      model: window.host.modelTools(),
    };
  },

  /** The tool names this host offers the model: visibility includes "model". */
  modelTools() {
    return state.tools.filter((t) => visibility(t).includes("model")).map((t) => t.name);
  },

  /**
   * A tool call as the model makes it. Renders the tool's view when it names one. Returns the
   * whole result (for the test to inspect) and what the model is handed of it.
   */
  async modelCall(name, args) {
    if (!window.host.modelTools().includes(name)) throw new Error(`the model has no tool ${name}`);
    const tool = state.tools.find((t) => t.name === name);
    const calling = state.client.callTool({ name, arguments: args });
    const uri = getToolUiResourceUri(tool);
    const card = uri ? await render(uri, args, calling) : null;
    const result = await calling;
    return {
      card,
      result,
      model_sees: {
        content: result.content,
        structuredContent: result.structuredContent,
        isError: result.isError,
      },
    };
  },

  /** Card `index` rendered once more from the same call, as a host does when a chat reloads. */
  async rerender(index) {
    const { uri, args, result } = state.cards[index];
    return render(uri, args, Promise.resolve(result));
  },

  /** A `tools/call` on the path a view's call takes (for replays and forgeries). */
  async appCall(name, args) {
    try {
      return { result: await appCall({ name, arguments: args }) };
    } catch (e) {
      return { error: String(e && e.message) };
    }
  },

  /** What card `index` reported so far. */
  card(index) {
    const { bridge, args, result, ...report } = state.cards[index];
    return JSON.parse(JSON.stringify(report));
  },

  /** Every card's report, and the height of its frame (for a failure's diagnosis). */
  cards() {
    return state.cards.map((c) => ({
      ...window.host.card(c.index),
      frame_height: document.querySelector(`#card-${c.index} iframe`).getBoundingClientRect().height,
    }));
  },

  /** Light or dark, for the page and every view (ui/notifications/host-context-changed). */
  setTheme(theme) {
    state.theme = theme;
    document.documentElement.dataset.theme = theme;
    for (const c of state.cards) c.bridge.setHostContext(hostContext());
  },

  /** The width of the column the views sit in. */
  setWidth(px) {
    state.width = px;
    document.documentElement.style.setProperty("--col", `${px}px`);
  },

  /** A client without the extension: its tools and a preview, then it goes away. */
  async plainClient(args) {
    const { client, tools } = await connect(false);
    const preview = await client.callTool({ name: "create_order", arguments: args });
    await client.close();
    return { tools: tools.map((t) => ({ name: t.name, meta: t._meta || null })), preview };
  },
};
document.documentElement.dataset.ready = "1";
