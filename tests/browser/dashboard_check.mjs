// The dashboard in a real browser (Debian's chromium, driven by playwright-core). Run by
// tests/integration/test_dashboard.py, which starts breakerbox and the upstream and judges the JSON this
// prints:
//   node dashboard_check.mjs <admin port> <data port> <admin token> <screenshot dir>
// Every step is bounded; the browser is closed whatever happens.
import { chromium } from "playwright-core";

const [adminPort, dataPort, token, shots] = process.argv.slice(2);
const origin = `http://127.0.0.1:${adminPort}`;
// Console errors while loading and watching (must be none), and after the token steps (where the
// refused token's 401 is the only one expected).
const result = { console_errors: [], console_errors_after_token: [], external_requests: [], steps: [] };
let tokenSteps = false;
const step = (name, data = {}) => result.steps.push({ name, ...data });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  timeout: 30000,
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(10000);
  const consoleError = (text) => (tokenSteps ? result.console_errors_after_token : result.console_errors).push(text);
  page.on("console", (m) => { if (m.type() === "error") consoleError(m.text()); });
  page.on("pageerror", (e) => consoleError(String(e)));
  page.on("request", (r) => { if (!r.url().startsWith(origin + "/")) result.external_requests.push(r.url()); });

  await page.goto(`${origin}/dashboard`, { waitUntil: "load" });
  const state = page.locator('[data-upstream="svc"] [data-role="state"]');
  await state.filter({ hasText: /^closed$/ }).waitFor();
  step("loaded", { state: await state.textContent() });
  result.threshold_marks = await page.locator('[data-upstream="svc"] .bar .mark').count();
  result.buttons_visible_without_token = await page.locator('[data-upstream="svc"] button[data-action="force-open"]').isVisible();
  // Three seconds of traffic, so that the screenshots show the sparklines.
  for (const until = Date.now() + 3000; Date.now() < until;) {
    await (await fetch(`http://127.0.0.1:${dataPort}/x?delay_ms=${Math.floor(Math.random() * 20)}`)).text();
    await new Promise((r) => setTimeout(r, 20));
  }
  await page.waitForTimeout(1100); // the next sample
  await page.screenshot({ path: `${shots}/dashboard-closed.png`, fullPage: true });

  // The upstream fails: three failing calls open the circuit (consecutive_failures: 3).
  const failedAt = Date.now();
  for (let i = 0; i < 3; ++i) await (await fetch(`http://127.0.0.1:${dataPort}/x?status=500`)).text();
  await state.filter({ hasText: /^open$/ }).waitFor({ timeout: 5000 });
  result.open_shown_after_ms = Date.now() - failedAt;
  result.timeline_mentions_trip = (await page.locator("#timeline").textContent()).includes("consecutive failures");
  // Issue 33: the failures' kinds stay in the tile whatever the latest transition says.
  result.failure_kinds = await page.locator('[data-upstream="svc"] [data-role="failure-kinds"]').textContent();
  await page.screenshot({ path: `${shots}/dashboard-open.png`, fullPage: true });

  // Operator buttons: only after the admin token is accepted.
  tokenSteps = true;
  await page.fill("#token", "wrong-token");
  await page.click("#token-form button[type=submit]");
  await page.locator("#token-state", { hasText: "refused" }).waitFor();
  result.buttons_visible_with_wrong_token = await page.locator('[data-upstream="svc"] button[data-action="force-open"]').isVisible();
  result.direct_post_without_token = (await fetch(`${origin}/admin/circuits/svc/force-open`, { method: "POST" })).status;

  await page.fill("#token", token);
  await page.click("#token-form button[type=submit]");
  await page.locator("#token-state", { hasText: "operator controls on" }).waitFor();
  await page.locator('[data-upstream="svc"] button[data-action="reset"]').click();
  await state.filter({ hasText: /^closed$/ }).waitFor();
  await page.locator('[data-upstream="svc"] button[data-action="force-open"]').click();
  await state.filter({ hasText: /^forced open$/ }).waitFor();
  result.forced_open = true;
  result.timeline_mentions_operator = (await page.locator("#timeline").textContent()).includes("(dashboard): force-open svc");
  // Issue 30 §7: every item shows the server's time with its date in UTC, and no "undefined" anywhere.
  const items = await page.locator("#timeline li").allTextContents();
  result.timeline_items = items;
  result.timeline_items_in_utc = items.length > 0 && items.every((t) => /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC /.test(t));
  result.decided_by_text = await page.locator('[data-upstream="svc"] [data-role="decided-by"]').textContent();
  // Issue 33: keyboard focus survives the once-a-second redraw.
  await page.locator('[data-upstream="svc"] button[data-action="reset"]').focus();
  await page.waitForTimeout(2200); // two samples: two redraws
  result.focus_after_redraws = await page.evaluate(() => {
    const b = document.activeElement;
    const t = b && b.closest("[data-upstream]");
    return b && t ? `${t.dataset.upstream}/${b.dataset.action}` : String(b && b.tagName);
  });
  // Issue 33: usable at phone width — nothing wider than the screen, the tiles in one column.
  await page.setViewportSize({ width: 375, height: 740 });
  await page.waitForTimeout(1100);
  result.phone_scroll_width = await page.evaluate(() => document.documentElement.scrollWidth);
  await page.screenshot({ path: `${shots}/dashboard-phone.png`, fullPage: true });
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
