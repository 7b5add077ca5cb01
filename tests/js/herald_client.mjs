// Herald's own JS client (clients/js) in Node, driven by Herald's Python tests.
// Usage: node herald_client.mjs <url> <token | sign:<secret>:<subscriber id>:<ttl seconds>>
// Prints one JSON line per client event ({event, data}); reads one JSON command per line on
// stdin ({"do": "inbox" | "markRead" | "refreshUnreadCount" | "drop" | "close", ...}) and
// prints its result as {event: "result", data: {do, value | error}}.
import { createHmac } from "node:crypto";
import { createInterface } from "node:readline";
import { createHeraldClient } from "../../clients/js/src/index.js";

const [url, given] = process.argv.slice(2);
const say = (event, data) => console.log(JSON.stringify({ event, data }));

// "sign:<secret>:<sub>:<ttl>": a token function, as a Node backend with a JWT library would
// serve one, signing a fresh short-lived token each time it is asked.
function signer(spec) {
  const [, secret, sub, ttl] = spec.split(":");
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return async () => {
    const body = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, exp: Math.floor(Date.now() / 1000) + Number(ttl) })}`;
    say("tokenSigned", {});
    return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
  };
}

const token = given.startsWith("sign:") ? signer(given) : given;
// Milliseconds an unread-count answer is held back once it has arrived ("slowCounts"), as on a
// slow network: the answer then comes after what happened meanwhile.
let countDelay = 0;
async function slowCounts(input, init) {
  const response = await fetch(input, init);
  if (countDelay && String(input).includes("/unread-count")) {
    await new Promise((resolve) => setTimeout(resolve, countDelay));
  }
  return response;
}
const herald = createHeraldClient({
  url, token, reconnectionDelay: 200, reconnectionDelayMax: 500, fetch: slowCounts,
});
for (const event of ["notification", "read", "unreadCount", "status", "authError", "reconnect"]) {
  herald.on(event, (data) => say(event, data));
}
// What the server sends, as it comes: the client must drop repeats and ack every copy.
herald.socket.on("notification:new", (n) => say("raw:notification:new", { id: n.id }));

const commands = {
  inbox: (args) => herald.inbox(args),
  markRead: ({ ids }) => herald.markRead(ids),
  refreshUnreadCount: () => herald.refreshUnreadCount(),
  // Starts a refresh and answers at once, without waiting for it.
  refreshInBackground: () => {
    herald.refreshUnreadCount().catch(() => {});
  },
  slowCounts: ({ ms }) => {
    countDelay = ms;
  },
  unreadCount: () => herald.unreadCount,
  // The transport drops under the socket, as when a network goes away.
  drop: () => {
    herald.socket.io.engine.close();
  },
  connect: () => {
    herald.connect();
  },
  close: () => {
    herald.close();
  },
  exit: () => {
    herald.close();
    setTimeout(() => process.exit(0), 50);
  },
};

createInterface({ input: process.stdin }).on("line", async (line) => {
  const command = JSON.parse(line);
  try {
    const value = await commands[command.do](command);
    say("result", { do: command.do, value: value ?? null });
  } catch (error) {
    say("result", { do: command.do, error: { message: error.message, status: error.status, code: error.code } });
  }
});
setTimeout(() => {
  say("timeout", {});
  process.exit(3);
}, 60_000);
