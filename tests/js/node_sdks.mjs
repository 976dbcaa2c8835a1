// Sends the same few events through a real Node client library to a tracking API whose
// host is the only thing changed: `node node_sdks.mjs segment|rudderstack URL WRITE_KEY`.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const [library, host, writeKey] = process.argv.slice(2);

const identify = { userId: "userId123", traits: { email: "john.doe@example.com", createdAt: "2020-01-01T00:00:00Z" } };
const track = { userId: "userId123", event: "Account Created", properties: { account_name: "Initech" } };

if (library === "segment") {
  const { Analytics } = require("@segment/analytics-node");
  const analytics = new Analytics({ writeKey, host, flushAt: 1 });
  analytics.identify(identify);
  analytics.track(track);
  await analytics.closeAndFlush({ timeout: 15000 });
} else if (library === "rudderstack") {
  const Analytics = require("@rudderstack/rudder-sdk-node");
  const client = new Analytics(writeKey, { dataPlaneUrl: host, flushAt: 1, logLevel: "error" });
  client.identify(identify);
  client.track(track);
  await client.flush();
} else {
  console.error(`unknown library ${library}`);
  process.exit(2);
}
