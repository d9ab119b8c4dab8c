// Drives headless Chromium through the console's dashboard: sign in, then
// the echo row's connection counter must move after an echo client connects.
//
// Usage: node dashboard.mjs BASE_URL ECHO_HOST ECHO_PORT USER PASSWORD [SCREENSHOT.png]
// Exits 0 when every check holds; prints what failed otherwise.
import net from "node:net";
import { launch, signIn } from "./chromium.mjs";

const [base, echoHost, echoPort, user, password, screenshot] = process.argv.slice(2);

function echoOnce(message) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(echoPort), echoHost, () => socket.end(message));
    let reply = "";
    socket.on("data", chunk => { reply += chunk; });
    socket.on("end", () => resolve(reply));
    socket.on("error", reject);
  });
}

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  await signIn(page, base, user, password);
  await page.goto(base + "/");
  const cell = 'tr[data-service="echo"] td[data-field="connections_total"]';
  await page.waitForSelector(cell);
  const before = Number(await page.getAttribute(cell, "data-value"));
  const reply = await echoOnce("from the browser test\n");
  if (reply !== "FROM THE BROWSER TEST\n") throw new Error(`echo replied ${JSON.stringify(reply)}`);
  await page.waitForFunction(
    ([selector, previous]) => Number(document.querySelector(selector)?.dataset.value) > previous,
    [cell, before],
    { timeout: 30_000 },
  );
  await page.waitForSelector("#events li");
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`echo connections went from ${before} to ${await page.getAttribute(cell, "data-value")}`);
} finally {
  await browser.close();
}
