// Browser tests of the operator console (PRODUCT.md B5): `rescind demo` with its simulators, driven
// through Debian's chromium by playwright-core. Each test is a sentence; each screen is saved as a
// screenshot in $RESCIND_SCREENSHOTS (default target/console-screenshots).
//
//   RESCIND_BIN=target/debug/rescind node tests/console/console.test.mjs

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";

const root = resolve(import.meta.dirname, "../..");
const binary = resolve(root, process.env.RESCIND_BIN ?? "target/debug/rescind");
const screenshots = resolve(root, process.env.RESCIND_SCREENSHOTS ?? "target/console-screenshots");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
// The demo's orders are numbered in the order it imports them (crates/rescind/src/demo.rs).
const demoOrder = (index) => `#${1001 + index}`;
const OWN_STORE_CARD = demoOrder(0);
const OWN_STORE_REQUEST = demoOrder(6);
const OWN_STORE_NEEDS_ATTENTION = demoOrder(10);
const SHOPIFY_OPEN = demoOrder(15);
const SHOPIFY_SHIPPED_AT_CHANNEL = demoOrder(17);
const YAHOO_OPEN = demoOrder(24);
const OWN_STORE_UNALLOCATED = demoOrder(4);
const OWN_STORE_BANK_TRANSFER_CANCELLED = demoOrder(9);

/** Starts `rescind demo` on a free port with its own database; resolves with its address and token. */
function startDemo(folder) {
  const child = spawn(binary, ["demo", "--listen", "127.0.0.1:0", "--database-file", join(folder, "demo.db")], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolvePromise, reject) => {
    let output = "";
    const timer = setTimeout(() => reject(new Error(`rescind demo did not start: ${output}`)), 60_000);
    child.on("exit", (code) => reject(new Error(`rescind demo exited with ${code}: ${output}`)));
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const console = output.match(/^Console: (\S+)$/m);
      const token = output.match(/^Token: (\S+)$/m);
      if (console && token) {
        clearTimeout(timer);
        resolvePromise({ child, console: console[1], origin: new URL(console[1]).origin, token: token[1] });
      }
    });
  });
}

const tests = [];
const test = (name, body) => tests.push({ name, body });

async function shot(page, name) {
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}

async function signIn(page, demo) {
  await page.goto(demo.console);
  await page.getByLabel(/APIトークン|API token/).fill(demo.token);
  await page.getByRole("button", { name: /ログイン|Sign in/ }).click();
  await page.waitForURL(/\/console\/orders/);
}

const row = (page, number) => page.locator(`tr[data-number="${number}"]`);

test("signing in with the shop's token opens the order list, and a wrong token is refused", async ({ page, demo }) => {
  await page.goto(demo.console);
  await page.waitForURL(/\/console\/sign_in/);
  await shot(page, "01-sign-in");
  await page.getByLabel("APIトークン").fill("rsk_not_a_token");
  await page.getByRole("button", { name: "ログイン" }).click();
  await assert.doesNotReject(page.getByText("このトークンは使えません。").waitFor());
  await page.getByLabel("APIトークン").fill(demo.token);
  await page.getByRole("button", { name: "ログイン" }).click();
  await page.waitForURL(/\/console\/orders/);
  assert.equal(await page.locator("h1").textContent(), "注文");
  assert.equal(await page.locator("tbody tr").count(), 36);
  const cookies = await page.context().cookies();
  const session = cookies.find((cookie) => cookie.name === "rescind_session");
  assert.ok(session, "a session cookie is set");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  await shot(page, "02-orders");
});

test("the order list filters by shipment status and finds an order by its number", async ({ page, demo }) => {
  await signIn(page, demo);
  await page.getByLabel("出荷ステータス").selectOption("shipped");
  await page.getByRole("button", { name: "絞り込み" }).click();
  await page.waitForURL(/fulfillment_status=shipped/);
  const statuses = await page.locator("tbody tr td:nth-child(7)").allTextContents();
  assert.ok(statuses.length > 0 && statuses.every((status) => status === "出荷済み"), statuses.join(","));
  await page.getByRole("link", { name: "リセット" }).click();
  await page.getByLabel("注文番号・お客様で検索").fill(SHOPIFY_OPEN);
  await page.getByRole("button", { name: "絞り込み" }).click();
  await page.waitForURL(/q=/);
  assert.deepEqual(await page.locator("tbody tr").evaluateAll((rows) => rows.map((row) => row.dataset.number)), [SHOPIFY_OPEN]);
});

test("a bulk cancel of three orders shows the channel's refusal for one and channel, warehouse and restock messages for the others", async ({ page, demo }) => {
  await signIn(page, demo);
  for (const number of [OWN_STORE_CARD, SHOPIFY_OPEN, SHOPIFY_SHIPPED_AT_CHANNEL]) {
    await row(page, number).locator('input[type="checkbox"]').check();
  }
  await page.getByTestId("cancel-selected").click();
  await page.waitForURL(/\/console\/cancel$/);
  const dialog = page.getByTestId("cancel-dialog");
  assert.equal(await dialog.locator("fieldset.group").count(), 2, "one group per channel: own store and Shopify");
  // Each channel offers its own reasons, grouped by whose fault it is (H2).
  for (const select of await dialog.locator("select[data-reason-select]").all()) {
    const groups = await select.locator("optgroup").evaluateAll((groups) => groups.map((group) => group.label));
    assert.deepEqual(groups, ["お客様都合", "店舗都合"]);
    await select.selectOption({ index: 1 });
  }
  await page.getByLabel("理由（自由記述）").fill("お客様からの依頼");
  assert.equal(await page.getByLabel("在庫を戻す").isChecked(), true);
  await shot(page, "03-cancel-dialog");
  await page.getByTestId("preview-button").click();
  const preview = page.getByTestId("preview");
  await preview.waitFor();
  const previewText = await preview.textContent();
  assert.match(previewText, /返金/);
  assert.match(previewText, /TEA-001 × 1/, "the restock of the own-store order is previewed");
  await shot(page, "04-cancel-preview");
  // The preview kept the choices; cancel now.
  for (const select of await dialog.locator("select[data-reason-select]").all()) {
    assert.notEqual(await select.inputValue(), "");
  }
  await page.getByTestId("run-button").click();
  await page.getByTestId("results").waitFor();
  await shot(page, "05-results");
  const result = async (number) => {
    const cells = row(page, number);
    return {
      ok: await cells.locator(".badge").textContent(),
      channel: await cells.locator('[data-column="channel"]').textContent(),
      warehouse: await cells.locator('[data-column="warehouse"]').textContent(),
      restock: await cells.locator('[data-column="restock"]').textContent(),
    };
  };
  const refused = await result(SHOPIFY_SHIPPED_AT_CHANNEL);
  assert.equal(refused.ok, "失敗");
  assert.match(refused.channel, /fulfilled/, "the channel's own message is shown (C3)");
  assert.match(refused.restock, /not run: the channel cancel did not succeed/);
  const own = await result(OWN_STORE_CARD);
  assert.equal(own.ok, "成功");
  assert.match(own.channel, /own store/);
  assert.match(own.warehouse, /delet/, "the outbound request was deleted before confirmation (F2)");
  assert.match(own.restock, /restocked TEA-001/);
  const shopify = await result(SHOPIFY_OPEN);
  assert.equal(shopify.ok, "成功");
  assert.match(shopify.channel, /Shopify|cancel/i);
  assert.match(shopify.restock, /restocked/);
  assert.match(await page.getByTestId("result-summary").textContent(), /2 件成功 \/ 1 件失敗/);
  // The results are what the order says now.
  await row(page, OWN_STORE_CARD).getByRole("link").click();
  assert.equal(await page.getByTestId("order-status").textContent(), "キャンセル済");
  await shot(page, "06-order-detail");
});

test("Yahoo!'s store-other reason needs a detail of 10 to 200 characters before the form is sent", async ({ page, demo }) => {
  await signIn(page, demo);
  await row(page, YAHOO_OPEN).locator('input[type="checkbox"]').check();
  await page.getByTestId("cancel-selected").click();
  const select = page.locator("select[data-reason-select]");
  await select.selectOption("230");
  const detail = page.locator("textarea[data-reason-detail]");
  await detail.fill("short");
  await page.getByTestId("run-button").click();
  assert.equal(await detail.evaluate((field) => field.validity.valid), false, "the browser holds the form back");
  assert.match(page.url(), /\/console\/cancel$/);
  await detail.fill("お客様のご要望により、ストア側でキャンセルいたします。");
  assert.equal(await detail.evaluate((field) => field.validity.valid), true);
});

test("accepting a customer's cancellation request cancels the order", async ({ page, demo }) => {
  await signIn(page, demo);
  await page.getByRole("link", { name: "キャンセル要求", exact: true }).click();
  const request = page.locator(`article[data-number="${OWN_STORE_REQUEST}"]`);
  await request.waitFor();
  await shot(page, "07-requests");
  await request.getByLabel("返金方法").selectOption("original_payment");
  await request.getByRole("button", { name: "承認してキャンセル" }).click();
  await page.waitForURL(/notice=accepted/);
  assert.match(await page.getByTestId("flash").textContent(), /キャンセル要求を承認しました/);
  assert.equal(await page.locator(`article[data-number="${OWN_STORE_REQUEST}"]`).count(), 0, "no longer waiting");
  await page.goto(`${demo.console}/orders?q=${encodeURIComponent(OWN_STORE_REQUEST)}`);
  await row(page, OWN_STORE_REQUEST).getByRole("link").first().click();
  assert.equal(await page.getByTestId("order-status").textContent(), "キャンセル済");
});

test("retrying a cancellation that needs attention completes its refund", async ({ page, demo }) => {
  await signIn(page, demo);
  await page.getByRole("link", { name: "要対応" }).click();
  const item = row(page, OWN_STORE_NEEDS_ATTENTION);
  await item.waitFor();
  assert.match(await item.textContent(), /declined/, "the last error is the payment provider's");
  await shot(page, "08-needs-attention");
  await item.getByRole("button", { name: /再実行/ }).click();
  await page.waitForURL(/notice=retried/);
  await page.goto(`${demo.console}/orders?q=${encodeURIComponent(OWN_STORE_NEEDS_ATTENTION)}`);
  await row(page, OWN_STORE_NEEDS_ATTENTION).getByRole("link").first().click();
  const detailUrl = page.url();
  for (let attempt = 0; attempt < 50; attempt += 1) {
    if ((await page.getByTestId("cancellation-status").textContent()) === "完了") break;
    await page.waitForTimeout(200);
    await page.goto(detailUrl);
  }
  assert.equal(await page.getByTestId("cancellation-status").textContent(), "完了");
  assert.equal(await page.locator('tr[data-step="refund"] td:nth-child(2)').textContent(), "成功");
});

test("cancelling part of an order from its page takes those quantities out and leaves the rest to ship", async ({ page, demo }) => {
  await signIn(page, demo);
  await page.goto(`${demo.console}/orders?q=${encodeURIComponent(OWN_STORE_UNALLOCATED)}`);
  await row(page, OWN_STORE_UNALLOCATED).getByRole("link").first().click();
  const firstLine = page.locator("#cancel-lines tbody tr").first();
  const sku = await firstLine.getAttribute("data-sku");
  await firstLine.getByLabel(/キャンセルする数量/).fill("1");
  await page.getByLabel("キャンセル理由（チャネル）").selectOption({ index: 1 });
  await page.getByRole("button", { name: "一部をキャンセル" }).click();
  await page.waitForURL(/notice=cancelled/);
  assert.equal(await page.locator(`tr[data-sku="${sku}"]`).getByTestId("cancelled-quantity").textContent(), "1");
  assert.equal(await page.getByTestId("order-status").textContent(), "受付中", "the rest still ships (B1)");
  assert.match(await page.getByTestId("history").textContent(), /order\.lines_cancelled/);
});

test("a bank-transfer cancellation waits for its refund until the operator records it, and can then be undone", async ({ page, demo }) => {
  await signIn(page, demo);
  await page.goto(`${demo.console}/orders?q=${encodeURIComponent(OWN_STORE_BANK_TRANSFER_CANCELLED)}`);
  await row(page, OWN_STORE_BANK_TRANSFER_CANCELLED).getByRole("link").first().click();
  assert.equal(await page.getByTestId("cancellation-status").textContent(), "返金待ち");
  const total = await page.locator("dt:text-is('支払済') + dd").textContent();
  await page.getByLabel(/金額/).fill(total.replace(/[^0-9.]/g, ""));
  await page.getByLabel("メモ").fill("振込済（みずほ銀行）");
  await page.getByRole("button", { name: "銀行振込の返金を記録" }).click();
  await page.waitForURL(/notice=refund/);
  assert.equal(await page.getByTestId("cancellation-status").textContent(), "完了", "W4: covered, so completed");
  assert.equal(await page.getByTestId("refunded").textContent(), total);
  await page.getByRole("button", { name: "キャンセルの取り消し" }).click();
  await page.waitForURL(/notice=undone/);
  assert.equal(await page.getByTestId("order-status").textContent(), "受付中");
  assert.equal(await page.getByTestId("cancellation-status").textContent(), "取り消し済");
});

test("the language can be switched between Japanese and English, and stays chosen", async ({ page, demo }) => {
  await signIn(page, demo);
  assert.equal(await page.locator("html").getAttribute("lang"), "ja");
  await page.getByRole("link", { name: "English" }).click();
  await page.waitForURL(/\/console\/orders/);
  assert.equal(await page.locator("h1").textContent(), "Orders");
  assert.equal(await page.locator("html").getAttribute("lang"), "en");
  await page.getByRole("link", { name: "Inventory" }).click();
  assert.equal(await page.locator("h1").textContent(), "Inventory");
  await shot(page, "09-inventory-en");
  await page.getByRole("link", { name: "Sync history" }).click();
  await shot(page, "10-sync-history-en");
  await page.getByRole("link", { name: "日本語" }).click();
  assert.equal(await page.locator("h1").textContent(), "連携履歴");
});

test("stock is adjusted by hand with a reason on the inventory screen", async ({ page, demo }) => {
  await signIn(page, demo);
  await page.getByRole("link", { name: "在庫" }).click();
  const line = page.locator('tr[data-sku="POT-001"]');
  const before = Number(await line.getByTestId("available").textContent());
  await line.getByLabel("増減").fill("5");
  await line.getByLabel("調整理由").fill("棚卸しで発見");
  await line.getByRole("button", { name: "手動調整" }).click();
  await page.waitForURL(/notice=adjusted/);
  assert.equal(Number(await page.locator('tr[data-sku="POT-001"]').getByTestId("available").textContent()), before + 5);
});

test("the keyboard reaches the skip link first and focus is visible", async ({ page, demo }) => {
  await signIn(page, demo);
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => ({
    text: document.activeElement.textContent,
    outline: getComputedStyle(document.activeElement).outlineStyle,
  }));
  assert.equal(focused.text, "本文へ移動");
  assert.notEqual(focused.outline, "none");
});

const folder = mkdtempSync(join(tmpdir(), "rescind-console-"));
mkdirSync(screenshots, { recursive: true });
const demo = await startDemo(folder);
const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let failed = 0;
try {
  for (const { name, body } of tests) {
    const context = await browser.newContext({ locale: "ja-JP", viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    const started = Date.now();
    try {
      await body({ page, demo });
      console.log(`PASS ${name} (${Date.now() - started} ms)`);
    } catch (error) {
      failed += 1;
      console.log(`FAIL ${name}\n${error.stack}`);
      await shot(page, `failed-${tests.findIndex((entry) => entry.name === name)}`).catch(() => {});
    } finally {
      await context.close();
    }
  }
} finally {
  await browser.close();
  demo.child.kill("SIGTERM");
  rmSync(folder, { recursive: true, force: true });
}
console.log(`${tests.length - failed} passed, ${failed} failed; screenshots in ${screenshots}`);
process.exit(failed === 0 ? 0 : 1);
