// A Herald user on the official Socket.IO JavaScript client (v4), for Herald's Python tests.
// Usage: node client.mjs <url> <session token> <transports, e.g. "polling,websocket"> <wanted>
// Prints one JSON line per event; acknowledges each notification; exits after `wanted`
// notifications (or after 30 s).
import { io } from "socket.io-client";

const [url, token, transports, wanted] = process.argv.slice(2);
const socket = io(url, { transports: transports.split(","), reconnection: false });
const say = (event, data) => console.log(JSON.stringify({ event, data }));
let received = 0;

socket.on("connect", () => {
  say("connect", { id: socket.id, transport: socket.io.engine.transport.name });
  socket.emit("authenticate", { token });
});
socket.io.on("open", () =>
  socket.io.engine.on("upgrade", (t) => say("upgrade", { transport: t.name })),
);
socket.on("auth:success", (data) => {
  say("auth:success", { ...data, transport: socket.io.engine.transport.name });
  say("ready", {});
});
socket.on("auth:error", (data) => say("auth:error", data));
socket.on("notification:new", async (data) => {
  say("notification:new", data);
  const reply = await socket.emitWithAck("notification:ack", { id: data.id });
  say("acked", reply);
  received += 1;
  if (received >= Number(wanted)) {
    say("done", { transport: socket.io.engine.transport.name });
    socket.close();
    process.exit(0);
  }
});
socket.on("connect_error", (err) => {
  say("connect_error", { message: err.message });
  process.exit(2);
});
setTimeout(() => {
  say("timeout", {});
  process.exit(3);
}, 30000);
