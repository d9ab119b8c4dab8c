// Launches Debian's Chromium headless with the flags this machine needs:
// no sandbox (tests run as root), no GPU, and none of the background traffic
// a closed network would refuse. Playwright gives each launch a fresh profile.
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

// Signs in through the login form and waits for the page it leads to.
export async function signIn(page, base, user, password) {
  await page.goto(base + "/login");
  await page.fill('input[name="user"]', user);
  await page.fill('input[name="password"]', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  if (page.url().includes("/login")) throw new Error("sign-in failed: " + (await page.textContent("main")));
}
