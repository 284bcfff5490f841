// Prints, as JSON, the command, arguments and environment an MCP host starts an unpacked
// extension with: the mcpb library's own getMcpConfigForManifest (its platform override,
// `${__dirname}` and `${user_config.*}` substitution, the manifest's defaults for fields left
// blank), given the directory the bundle was unpacked to and the settings form's values.
//
//   node claude_desktop_launch.mjs MCPB_PACKAGE_DIR EXTENSION_DIR USER_CONFIG_JSON
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [mcpbDir, extensionDir, userConfig] = process.argv.slice(2);
const { getMcpConfigForManifest } = await import(
  pathToFileURL(join(mcpbDir, "dist", "index.js")).href
);
const manifest = JSON.parse(readFileSync(join(extensionDir, "manifest.json"), "utf8"));
const config = await getMcpConfigForManifest({
  manifest,
  extensionPath: extensionDir,
  systemDirs: {},
  userConfig: JSON.parse(userConfig),
  pathSeparator: "/",
});
if (!config) {
  console.error("no launch configuration: a required setting is missing");
  process.exit(1);
}
process.stdout.write(JSON.stringify(config));
