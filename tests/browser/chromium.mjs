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
