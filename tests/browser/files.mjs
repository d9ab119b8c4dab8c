// Drives headless Chromium through the file browser: sign in, upload a file
// with the page's file picker, see it listed, download it through its link
// and compare the bytes, then delete it with the page's button.
//
// Usage: node files.mjs BASE_URL USER PASSWORD FILE [SCREENSHOT.png]
// With a screenshot path, a second one at a phone's size goes next to it
// (NAME-phone.png).
import { readFile } from "node:fs/promises";
import path from "node:path";
import { launch, signIn } from "./chromium.mjs";

const [base, user, password, file, screenshot] = process.argv.slice(2);
const name = path.basename(file);

const browser = await launch();
try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1000, height: 640 } });
  const page = await context.newPage();
  await signIn(page, base, user, password);
  await page.goto(base + "/files/");

  await Promise.all([
    page.waitForNavigation(),
    page.setInputFiles("#upload-files", file),
  ]);
  const row = `tr[data-name="${name}"]`;
  await page.waitForSelector(row);
  if (screenshot) {
    await page.screenshot({ path: screenshot, fullPage: true });
    await page.setViewportSize({ width: 390, height: 780 });
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-phone.png"), fullPage: true });
    await page.setViewportSize({ width: 1000, height: 640 });
  }

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.click(`${row} a.download`),
  ]);
  const saved = await download.path();
  const [original, copy] = await Promise.all([readFile(file), readFile(saved)]);
  if (!original.equals(copy)) throw new Error(`downloaded ${copy.length} bytes differ from the ${original.length} uploaded`);

  page.once("dialog", dialog => dialog.accept());
  await Promise.all([page.waitForNavigation(), page.click(`${row} button.danger`)]);
  if (await page.$(row)) throw new Error(`${name} is still listed after delete`);
  console.log(`uploaded, downloaded and deleted ${name} (${original.length} bytes)`);
} catch (err) {
  // What the page itself said (an upload that failed says so there).
  const pages = browser.contexts().flatMap(context => context.pages());
  for (const page of pages) {
    const said = await page.textContent("#status").catch(() => null);
    console.error(`page ${page.url()} status: ${said}`);
  }
  throw err;
} finally {
  await browser.close();
}
