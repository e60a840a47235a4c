// Browser journeys through the portal, driven by playwright-core in Debian's Chromium (headless)
// against the real runtime (real Postgres and Redis, fake LLM). Elements are found by role and
// label, as a person using a screen reader would find them. Screenshots of the main pages go to
// e2e/artifacts/screenshots/.
//
// Usage: node e2e/browser/journeys.mjs BASE_URL ADMIN_EMAIL ADMIN_PASSWORD
import { createRequire } from 'node:module';
import { createHmac } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE || 'playwright-core');

const [base, adminEmail, adminPassword] = process.argv.slice(2);
if (!base || !adminEmail || !adminPassword) {
  console.error('usage: journeys.mjs BASE_URL ADMIN_EMAIL ADMIN_PASSWORD');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const shots = path.resolve(here, '../artifacts/screenshots');
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});

let passed = 0;
let failed = 0;
async function journey(name, fn) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  // A Rust panic in the app is logged to the console, not thrown.
  // A Content-Security-Policy violation is reported there too.
  page.on('console', (m) => m.type() === 'error'
    && (m.text().includes('panicked') || m.text().includes('Content Security Policy'))
    && consoleErrors.push(m.text().split('\n')[0]));
  if (process.env.DEBUG_BROWSER) {
    page.on('console', (m) => console.log(`        console: ${m.text()}`));
    page.on('response', (r) => r.url().includes('/api/') && console.log(`        ${r.request().method()} ${r.url()} → ${r.status()}`));
  }
  try {
    await fn(page, context);
    if (consoleErrors.length) throw new Error(`errors in the page: ${consoleErrors.join('; ')}`);
    passed += 1;
    console.log(`  ok    ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`  FAIL  ${name}\n        ${String(e.stack || e).split('\n').slice(0, 4).join('\n        ')}`);
    await page.screenshot({ path: path.join(shots, `failed-${name.replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => {});
  } finally {
    await context.close();
  }
}

async function signIn(page, email, password) {
  await page.goto(base);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

// Polls a condition from here (not in the page: the portal's CSP forbids the evaluated
// predicates that page.waitForFunction polls with) until it holds, or fails after `ms`.
async function waitUntil(check, what, ms = 15000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

// "2026-12-01 19:42" in `zone`, as the server writes a tenant's local time.
function wallClock(zone, at) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-CA', {
    timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  }).formatToParts(at).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
}

// The tenant's id, asked with the page's own cookie session (a GET needs no CSRF header).
async function tenantId(context, name) {
  const res = await context.request.get(`${base}api/tenants?q=${encodeURIComponent(name)}`);
  expect(res.ok(), `tenant lookup: ${res.status()}`);
  const tenant = (await res.json()).items[0];
  expect(tenant, `the tenant ${name} exists`);
  return tenant.id;
}

// The CSRF token of the page's cookie session, for a change made through the API beside it.
async function csrfToken(context) {
  const cookie = (await context.cookies(base)).find((c) => c.name === 'konstruct_csrf');
  expect(cookie, 'the CSRF cookie is set');
  return cookie.value;
}

// The workspace the fake Slack has the platform's app installed in (e2e/browser.sh).
const slack = {
  token: process.env.SLACK_BOT_TOKEN,
  team: process.env.SLACK_TEAM_ID,
  botUser: process.env.SLACK_BOT_USER_ID,
};
if (!slack.token || !slack.team || !slack.botUser) {
  console.error('SLACK_BOT_TOKEN, SLACK_TEAM_ID and SLACK_BOT_USER_ID name the fake Slack workspace (e2e/browser.sh sets them)');
  process.exit(2);
}

// The business number the fake Meta knows (e2e/browser.sh), and the app secret typed for "my own
// Meta app".
const whatsapp = {
  numberId: process.env.WHATSAPP_PHONE_NUMBER_ID,
  wabaId: process.env.WHATSAPP_WABA_ID,
  display: process.env.WHATSAPP_DISPLAY,
  verifiedName: process.env.WHATSAPP_VERIFIED_NAME,
  token: process.env.WHATSAPP_TOKEN,
  ownAppSecret: process.env.WHATSAPP_OWN_APP_SECRET,
};
if (Object.values(whatsapp).some((v) => !v)) {
  console.error('WHATSAPP_PHONE_NUMBER_ID, WHATSAPP_WABA_ID, WHATSAPP_DISPLAY, WHATSAPP_VERIFIED_NAME, WHATSAPP_TOKEN and WHATSAPP_OWN_APP_SECRET name the fake WhatsApp number (e2e/browser.sh sets them)');
  process.exit(2);
}

// A member of the tenant with `role`, made through the API by the platform admin (there are no
// invitations yet). The context's cookies are left as they were.
async function addMember(context, tenant, role, name) {
  const api = context.request;
  const login = await api.post(`${base}api/auth/login`, { data: { email: adminEmail, password: adminPassword } });
  expect(login.ok(), `admin sign-in: ${login.status()}`);
  const auth = { authorization: `Bearer ${(await login.json()).token}` };
  const found = await (await api.get(`${base}api/tenants?q=${encodeURIComponent(tenant)}`, { headers: auth })).json();
  expect(found.items[0], `the tenant ${tenant} exists`);
  const email = `${role.replace('_', '-')}-${stamp}@example.com`;
  const password = `${role}-password-${stamp}`;
  const created = await api.post(`${base}api/tenants/${found.items[0].id}/members`, {
    headers: auth,
    data: { email, display_name: name, password, role },
  });
  expect(created.status() === 201, `${role} created: ${created.status()}`);
  await api.post(`${base}api/auth/logout`, { headers: auth });
  await context.clearCookies();
  return { email, password };
}

const stamp = Date.now().toString(36);

// The tenant's customer admin, made the first time a journey needs one.
let admin;
async function customerAdmin(context) {
  admin ??= await addMember(context, tenantName, 'customer_admin', 'Ada Admin');
  await context.clearCookies();
  return admin;
}
const tenantName = `Acme ${stamp}`;

// The tenant's read-only customer operator, made the first time a journey needs one.
let operator;
async function customerOperator(context) {
  operator ??= await addMember(context, tenantName, 'customer_operator', 'Otto Operator');
  await context.clearCookies();
  return operator;
}

// The knowledge base: a Markdown FAQ uploaded by the customer admin is indexed (followed live
// until it is ready) and found by a customer's question, with its score; the operator sees the
// same page without anything that uploads, imports, edits or deletes.
async function knowledgeJourney(page, context) {
  const dir = mkdtempSync(path.join(tmpdir(), 'konstruct-knowledge-'));
  const faq = path.join(dir, 'refunds-faq.md');
  writeFileSync(faq, '# Refunds\n\nRefunds are issued within 14 days of the return being received.\n');
  try {
    const me = await customerAdmin(context);
    await signIn(page, me.email, me.password);
    await page.getByRole('heading', { name: 'AI employees' }).waitFor();
    await page.getByRole('link', { name: 'Knowledge' }).click();
    await page.getByRole('heading', { name: 'Knowledge', exact: true }).waitFor();
    await page.getByRole('heading', { name: 'No documents yet' }).waitFor();
    expect(await page.getByRole('note').filter({ hasText: 'Read-only' }).count() === 0, 'an admin is not read-only');
    await shot(page, '17a-knowledge-empty');

    await page.getByLabel('Files to upload').setInputFiles(faq);
    const upload = page.getByRole('list', { name: 'Uploads' }).getByRole('listitem').filter({ hasText: 'refunds-faq.md' });
    await upload.getByText(/^Uploaded$|Not uploaded\.|Too large|Not a file Konstruct can read|Not now\./).waitFor();
    expect(await upload.getByText('Uploaded', { exact: true }).count() === 1, `the file was taken: ${await upload.textContent()}`);

    // The list follows the indexing by itself: no reload, no fixed wait.
    const row = page.getByRole('table', { name: 'Documents' }).getByRole('row').filter({ hasText: 'refunds-faq.md' });
    await row.filter({ hasText: /Ready|Failed/ }).waitFor({ timeout: 60000 });
    const text = await row.textContent();
    expect(text.includes('Ready') && !text.includes('Failed'), `the document is ready: ${text}`);
    expect(text.includes('Markdown') && text.includes('All AI employees'), `the row names the format and who uses it: ${text}`);
    await shot(page, '17b-knowledge-ready');

    const search = page.getByRole('search', { name: 'What would the agent find?' });
    await search.getByLabel('Customer question').fill('how long do refunds take');
    await search.getByRole('button', { name: 'Search' }).click();
    const passage = page.getByRole('list', { name: 'Passages found' }).getByRole('listitem')
      .filter({ hasText: 'Refunds are issued within 14 days of the return being received.' });
    await passage.waitFor();
    const score = (await passage.getByText(/^Score \d\.\d\d$/).textContent()).replace('Score ', '');
    expect(Number(score) > 0 && Number(score) <= 1, `the passage has a score: ${score}`);
    await shot(page, '17c-knowledge-search');

    // The operator: the documents and the search, nothing that changes them.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('status').filter({ hasText: 'You are signed out.' }).waitFor();
    const reader = await customerOperator(context);
    await signIn(page, reader.email, reader.password);
    await page.getByRole('heading', { name: 'AI employees' }).waitFor();
    await page.getByRole('link', { name: 'Knowledge' }).click();
    await page.getByRole('note').filter({ hasText: 'Read-only' }).waitFor();
    await row.filter({ hasText: 'Ready' }).waitFor();
    await search.waitFor();
    expect(await page.getByLabel('Files to upload').count() === 0, 'no upload for operators');
    expect(await page.getByRole('form', { name: 'Import a web page' }).count() === 0, 'no URL import for operators');
    expect(await page.getByRole('form', { name: 'Change the embedding model' }).count() === 0, 'no model change for operators');
    for (const action of [/^Delete/, /^Retry/, /^Edit/]) {
      expect(await page.getByRole('button', { name: action }).count() === 0, `no ${action} button for operators`);
    }
    await shot(page, '17d-knowledge-operator');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// The shop the tenant's order-status HTTP tool calls (e2e/browser.sh starts it), and the key its
// secret header sends.
const shop = { url: process.env.SHOP_URL, key: process.env.SHOP_KEY };
if (!shop.url || !shop.key) {
  console.error('SHOP_URL and SHOP_KEY name the fake shop (e2e/browser.sh sets them)');
  process.exit(2);
}

// What a field's description says (its hint and its error), as a screen reader reads it with
// the field.
async function described(field) {
  return field.evaluate((el) => (el.getAttribute('aria-describedby') || '').split(' ')
    .map((id) => document.getElementById(id)?.textContent || '').join(' '));
}

// The shop's key is nowhere on the page: not in its text, not in its markup, not in what its
// fields hold.
async function expectShopKeyHidden(page, when) {
  const seen = await page.evaluate(() => [document.body.innerText,
    ...[...document.querySelectorAll('input, textarea, select')].map((e) => e.value)].join('\n'));
  expect(!seen.includes(shop.key) && !(await page.content()).includes(shop.key), `the shop key is not shown ${when}`);
}

// Tools: the customer admin creates an HTTP tool that looks orders up at the fake shop, with the
// shop's key in a secret header — JSON that does not parse is caught in the browser, a schema
// that is not JSON Schema is refused by the server, both under the parameters — tries it, gives
// it to Nia, and Nia calls it in the test chat; the call is shown under the reply and in the
// tool's and Nia's last calls. The operator sees the tools without anything that changes or
// runs one, and the key is never shown again.
async function toolsJourney(page, context) {
  const me = await customerAdmin(context);
  await signIn(page, me.email, me.password);
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  await page.getByRole('link', { name: 'Tools', exact: true }).click();
  await page.getByRole('heading', { name: 'Tools', exact: true }).waitFor();
  const table = page.getByRole('table', { name: 'Tools' });
  for (const builtin of ['knowledge_base_search', 'handoff_to_human', 'current_time']) {
    await table.getByRole('row').filter({ hasText: builtin }).filter({ hasText: 'Built-in' }).waitFor();
  }
  await page.getByRole('heading', { name: 'No HTTP tools yet' }).waitFor();
  expect(await page.getByRole('note').filter({ hasText: 'Read-only' }).count() === 0, 'an admin is not read-only');
  await shot(page, '18a-tools-list');

  // Every creation the page sends, to see that JSON which does not parse never leaves it.
  const creations = [];
  const isCreation = (r) => r.method() === 'POST' && /\/api\/tenants\/[^/]+\/tools$/.test(new URL(r.url()).pathname);
  page.on('request', (r) => isCreation(r) && creations.push(r));

  await page.getByRole('link', { name: 'New HTTP tool' }).click();
  await page.getByRole('heading', { name: 'New HTTP tool' }).waitFor();
  const form = page.getByRole('form', { name: 'HTTP tool' });
  const parameters = form.getByLabel('Parameters (JSON Schema)');
  expect(JSON.parse(await parameters.inputValue()).type === 'object', 'the parameters start as an object schema');
  await form.getByLabel('Name', { exact: true }).fill('order_status');
  await form.getByLabel('Description', { exact: true }).fill('Looks up an order by its number: its status, carrier and expected delivery.');
  await form.getByRole('combobox', { name: 'Method' }).selectOption('GET');
  await form.getByLabel('URL', { exact: true }).fill(`${shop.url}/orders/{order_id}`);
  await form.getByRole('button', { name: 'Add a header' }).click();
  const header = form.getByRole('group', { name: 'Header 1' });
  await header.getByLabel('Header name').fill('X-Shop-Key');
  await header.getByLabel('Header value').fill(shop.key);
  await header.getByLabel('Secret').check();
  expect(await header.getByLabel('Header value').getAttribute('type') === 'password', 'a secret value is typed into a password field');

  // JSON that does not parse: said under the parameters, and nothing is sent.
  await parameters.fill('{"type": "object", "properties": {"order_id": ');
  await form.getByRole('button', { name: 'Create tool' }).click();
  await form.getByRole('alert').filter({ hasText: 'Not valid JSON' }).waitFor();
  expect(await parameters.getAttribute('aria-invalid') === 'true', 'the parameters are marked invalid');
  expect((await described(parameters)).includes('Not valid JSON'), 'the error describes the parameters field');
  expect(creations.length === 0, `JSON that does not parse is not sent (${creations.length} sent)`);

  // JSON, but not a JSON Schema: the server refuses it, and says why under the parameters.
  await parameters.fill('{"type":"object","properties":{"order_id":{"type":12}}}');
  const refused = page.waitForResponse((r) => isCreation(r.request()));
  await form.getByRole('button', { name: 'Create tool' }).click();
  expect((await refused).status() === 422, `a schema that is not JSON Schema is refused: ${(await refused).status()}`);
  await waitUntil(async () => {
    const error = page.locator('#tool-parameters-error');
    if ((await error.count()) === 0) return false;
    const shown = (await error.textContent()) || '';
    return /\S/.test(shown) && !shown.includes('Not valid JSON');
  }, 'the server says why the schema is refused');
  expect(await parameters.getAttribute('aria-invalid') === 'true', 'the parameters are marked invalid');
  await form.getByRole('alert').filter({ hasText: 'Please correct the marked fields.' }).waitFor();
  expect(await form.getByLabel('URL', { exact: true }).getAttribute('aria-invalid') === 'false', 'the URL is fine');
  await page.getByRole('heading', { name: 'New HTTP tool' }).waitFor();
  await shot(page, '18b-tool-editor-errors');

  // The right schema: created, and its page opens.
  await parameters.fill(JSON.stringify({
    type: 'object',
    properties: { order_id: { type: 'string', description: 'The order number' } },
    required: ['order_id'],
  }, null, 2));
  await form.getByRole('button', { name: 'Create tool' }).click();
  await page.getByRole('status').filter({ hasText: 'Created order_status.' }).waitFor();
  await page.getByRole('heading', { name: 'order_status' }).waitFor();
  expect(/\/tools\/[0-9a-f-]{36}$/.test(page.url()), `the tool's own page: ${page.url()}`);
  expect(await parameters.getAttribute('aria-invalid') === 'false', 'the parameters error is gone');
  // The key is sealed: the form shows its last characters only, and the value field is empty
  // (left so, it is kept).
  for (const when of ['after saving', 'after a reload']) {
    const saved = form.getByRole('group', { name: 'Header 1' });
    expect(await saved.getByLabel('Header name').inputValue() === 'X-Shop-Key', `the header is kept ${when}`);
    expect(await saved.getByLabel('Secret').isChecked(), `the header is secret ${when}`);
    expect(await saved.getByLabel('Header value').inputValue() === '', `the key is not given back ${when}`);
    const hint = (await saved.locator('code.secret-hint').textContent()).replace(/^[…*.\s]+/, '');
    expect(hint.length > 0 && hint.length < shop.key.length && shop.key.endsWith(hint), `the key's hint is its last characters ${when}: ${hint}`);
    expect((await described(saved.getByLabel('Header value'))).includes('Leave empty to keep it'), `an empty value keeps the key ${when}`);
    await expectShopKeyHidden(page, when);
    if (when === 'after saving') {
      await page.reload();
      await page.getByRole('heading', { name: 'order_status' }).waitFor();
    }
  }

  // Try it: the arguments start from the schema; the shop answers through the secret header.
  const tryIt = page.getByRole('region', { name: 'Try it' });
  const args = tryIt.getByLabel('Arguments (JSON)');
  expect(JSON.parse(await args.inputValue()).order_id === '', `the arguments start from the schema: ${await args.inputValue()}`);
  await args.fill('{"order_id": ');
  await tryIt.getByRole('button', { name: 'Run' }).click();
  await tryIt.getByRole('alert').filter({ hasText: 'Not valid JSON' }).waitFor();
  await args.fill('{"order_id":"1234"}');
  await tryIt.getByRole('button', { name: 'Run' }).click();
  await tryIt.getByRole('status').filter({ hasText: /^Ran:/ }).waitFor({ timeout: 30000 });
  const result = tryIt.getByRole('region', { name: 'Test result' });
  const facts = await result.locator('dl').textContent();
  expect(facts.includes('OK') && facts.includes('200'), `the outcome and the HTTP status: ${facts}`);
  const content = await result.locator('pre').textContent();
  expect(content.includes('shipped'), `what the AI employee would see: ${content}`);
  expect(await args.getAttribute('aria-invalid') === 'false', 'the arguments are fine');
  await expectShopKeyHidden(page, 'in the test run');
  await shot(page, '18c-tool-test');

  // Nia gets the tool, with a limit on its steps.
  await page.getByRole('link', { name: 'AI employees' }).click();
  await page.getByRole('link', { name: 'Nia' }).click();
  const given = page.getByRole('checkbox', { name: /order_status/ });
  await given.waitFor();
  expect(!(await given.isChecked()), 'Nia does not have the tool yet');
  await page.getByRole('checkbox', { name: /knowledge_base_search/ }).waitFor();
  await given.check();
  const steps = page.getByLabel('Most tool steps per turn');
  await steps.fill('four');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('alert').filter({ hasText: 'Enter a whole number' }).waitFor();
  expect(await steps.getAttribute('aria-invalid') === 'true', 'the steps are marked invalid');
  await steps.fill('4');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
  await page.reload();
  await given.waitFor();
  expect(await given.isChecked(), 'the tool was given to Nia');
  expect(await steps.inputValue() === '4', `the step limit was saved: ${await steps.inputValue()}`);
  expect(await page.getByLabel('Turn deadline (seconds)').inputValue() === '', 'the turn deadline stays the platform default');

  // The test chat: Nia looks the order up with the tool and answers with what the shop said.
  await page.getByRole('link', { name: 'Test chat' }).click();
  await page.getByRole('heading', { name: 'Test chat' }).waitFor();
  await page.getByLabel('Message').fill('where is my order 1234?');
  await page.getByRole('button', { name: 'Send' }).click();
  const conversation = page.getByRole('list', { name: 'Conversation' });
  await conversation.getByText('where is my order 1234?').waitFor();
  const reply = conversation.locator('li.message.agent').filter({ has: page.getByRole('list', { name: 'Tool calls' }) });
  await reply.waitFor({ timeout: 30000 });
  const said = await reply.locator('p.text').textContent();
  expect(said.includes('shipped'), `the reply has the shop's answer: ${said}`);
  const call = reply.getByRole('list', { name: 'Tool calls' }).getByRole('listitem').filter({ hasText: 'order_status' });
  expect((await call.textContent()).includes('OK'), `the call went well: ${await call.textContent()}`);
  await call.getByText('Arguments and result').click();
  const io = await call.locator('pre').allTextContents();
  expect(io.length === 2 && io[0].includes('1234') && io[1].includes('shipped'), `the call's arguments and result: ${io}`);
  await expectShopKeyHidden(page, 'in the test chat');
  await shot(page, '18d-chat-tool-call');

  // The call is among Nia's last tool calls, and the tool's.
  await page.getByRole('link', { name: 'AI employees' }).click();
  await page.getByRole('link', { name: 'Nia' }).click();
  await page.getByRole('table', { name: 'Last tool calls' }).getByRole('row')
    .filter({ hasText: 'order_status' }).filter({ hasText: 'OK' }).first().waitFor();
  await page.getByRole('link', { name: 'Tools', exact: true }).click();
  const row = table.getByRole('row').filter({ hasText: 'order_status' });
  await row.filter({ hasText: 'Nia' }).waitFor();
  expect((await row.textContent()).includes('HTTP'), `the row names the kind: ${await row.textContent()}`);
  await row.getByRole('link', { name: 'Edit order_status' }).click();
  await page.getByRole('table', { name: 'Last calls' }).getByRole('row')
    .filter({ hasText: 'Nia' }).filter({ hasText: 'OK' }).first().waitFor();
  await page.getByText('Given to Nia.').waitFor();

  // The operator: the tools, the tool and its calls; nothing that creates, changes, runs or
  // deletes one.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('status').filter({ hasText: 'You are signed out.' }).waitFor();
  const reader = await customerOperator(context);
  await signIn(page, reader.email, reader.password);
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  await page.getByRole('link', { name: 'Tools', exact: true }).click();
  await page.getByRole('note').filter({ hasText: 'Read-only' }).waitFor();
  await row.filter({ hasText: 'Nia' }).waitFor();
  expect(await page.getByRole('link', { name: 'New HTTP tool' }).count() === 0, 'no new tool for operators');
  expect(await page.getByRole('button', { name: /^Delete/ }).count() === 0, 'nothing to delete for operators');
  await shot(page, '18e-tools-operator');
  await row.getByRole('link', { name: 'Open order_status' }).click();
  await page.getByRole('heading', { name: 'order_status' }).waitFor();
  await page.getByRole('table', { name: 'Last calls' }).getByRole('row').filter({ hasText: 'Nia' }).first().waitFor();
  await page.getByRole('note').filter({ hasText: 'Read-only' }).waitFor();
  expect(await page.getByRole('region', { name: 'Try it' }).count() === 0, 'no Try it for operators');
  expect(await page.getByRole('button', { name: 'Run' }).count() === 0, 'nothing to run for operators');
  expect(await form.getByLabel('Name', { exact: true }).isDisabled(), 'the form is read-only');
  expect(await page.getByRole('button', { name: 'Save' }).count() === 0, 'no save button');
  expect(await page.getByRole('button', { name: 'Add a header' }).count() === 0, 'no header to add');
  await expectShopKeyHidden(page, 'to the operator');
}

await journey('platform admin: tenant, AI employee with a persona, test chat reply', async (page) => {
  await page.goto(base);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await shot(page, '01-sign-in');
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('heading', { name: 'Tenants' }).waitFor();

  const form = page.getByRole('form', { name: 'New tenant' });
  await form.getByLabel('Tenant name').fill(tenantName);
  await form.getByRole('button', { name: 'Create tenant' }).click();
  await page.getByRole('status').filter({ hasText: `Created ${tenantName}.` }).waitFor();
  await page.getByRole('table').getByText(tenantName, { exact: true }).waitFor();
  await shot(page, '02-tenants');

  await page.getByRole('button', { name: `Open ${tenantName}` }).click();
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  await page.getByRole('link', { name: 'Hire an AI employee' }).click();
  await page.getByRole('heading', { name: 'Hire an AI employee' }).waitFor();

  // The server's field errors are shown inline.
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Please correct the marked fields.').waitFor();

  await page.getByLabel('Name', { exact: true }).fill('Nia');
  await page.getByLabel('Role', { exact: true }).fill('Customer support specialist');
  await page.getByLabel('Persona', { exact: true }).fill('Warm, precise and always signs off with "Cheers, Nia".');
  await page.getByLabel('System prompt', { exact: true }).fill('Answer questions about Acme widgets.');
  await page.getByText('Unsaved changes').waitFor();
  await page.getByRole('button', { name: 'Add a rule' }).click();
  await page.getByRole('group', { name: 'Rule 1' }).getByLabel('Hand off to').fill('#support');
  await shot(page, '03-agent-designer');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();

  await page.getByRole('link', { name: 'Test chat' }).click();
  await page.getByRole('heading', { name: 'Test chat' }).waitFor();
  await page.getByLabel('Message').fill('Where is my order 4711?');
  await page.getByRole('button', { name: 'Send' }).click();
  const conversation = page.getByRole('list', { name: 'Conversation' });
  await conversation.getByText('Where is my order 4711?').waitFor();
  // The fake LLM echoes the message: the reply arrived through the whole pipeline.
  await conversation.getByText('echo: Where is my order 4711?').waitFor();
  await shot(page, '04-test-chat');
});

await journey('settings: a bad time zone is refused inline, a good one is saved with the local time', async (page) => {
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('button', { name: `Open ${tenantName}` }).click();
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  await page.getByText('Local time now:').waitFor();
  const zone = page.getByRole('combobox', { name: 'Time zone' });
  expect(await zone.inputValue() === 'UTC', `a new tenant keeps UTC, not ${await zone.inputValue()}`);

  await zone.fill('Mars/Olympus_Mons');
  await page.getByText('Unsaved changes').waitFor();
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByRole('alert').filter({ hasText: 'not a time zone we know' }).waitFor();
  expect(await zone.getAttribute('aria-invalid') === 'true', 'the time zone is marked invalid');
  // The error is tied to the field, so a screen reader reads it with the field.
  const described = await zone.evaluate((el) => el.getAttribute('aria-describedby').split(' ')
    .map((id) => document.getElementById(id)?.textContent || '').join(' '));
  expect(described.toLowerCase().includes('not a time zone we know'), `the error describes the field: ${described}`);
  await shot(page, '09-settings-invalid');

  await zone.fill('Europe/Berlin');
  await page.getByRole('combobox', { name: 'Locale' }).selectOption('de');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByRole('status').filter({ hasText: 'Settings saved.' }).waitFor();
  await page.getByText('(Europe/Berlin)').waitFor();
  expect(await zone.getAttribute('aria-invalid') === 'false', 'the error is gone');
  const shown = await page.getByText('Local time now:').textContent();
  const now = Date.now();
  const expected = [now - 60000, now, now + 60000].map((t) => wallClock('Europe/Berlin', new Date(t)));
  expect(expected.some((e) => shown.includes(e)), `the local time is Berlin's (${shown}, expected one of ${expected})`);
  expect(await page.getByText('Unsaved changes').count() === 0, 'nothing is left unsaved');
  await shot(page, '10-settings-saved');

  // Saved for real: a reload shows it.
  await page.reload();
  await page.getByText('(Europe/Berlin)').waitFor();
  expect(await page.getByRole('combobox', { name: 'Locale' }).inputValue() === 'de', 'the locale was saved');
});

await journey('customers: the sender of the test-chat message is listed, search and filter narrow it', async (page) => {
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('button', { name: `Open ${tenantName}` }).click();
  await page.getByRole('link', { name: 'Customers' }).click();
  await page.getByRole('heading', { name: 'Customers' }).waitFor();
  const table = page.getByRole('table', { name: 'Customers' });
  const row = table.getByRole('row').filter({ hasText: 'Platform admin' });
  await row.waitFor();
  expect((await row.textContent()).includes('Test chat'), 'the channel is named');
  expect((await row.textContent()).includes('user:'), 'the channel id is shown');
  await shot(page, '11-customers');

  const search = page.getByRole('searchbox', { name: 'Search customers' });
  await search.fill('nobody-by-this-name');
  await page.getByText('No customers match this search.').waitFor();
  await page.getByRole('button', { name: 'Clear the search' }).click();
  await row.waitFor();
  await page.getByRole('combobox', { name: 'Channel' }).selectOption('slack');
  await page.getByText('No customers match this search.').waitFor();
  await page.getByRole('combobox', { name: 'Channel' }).selectOption('web');
  await row.waitFor();
});

await journey('channels: the Request URL to paste; a wrong token refused inline, the right one connects, another tenant is refused (409), disconnect', async (page, context) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(base).origin });
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('button', { name: `Open ${tenantName}` }).click();
  await page.getByRole('link', { name: 'Channels' }).click();
  await page.getByRole('heading', { name: 'Channels' }).waitFor();
  await page.getByText('No Slack workspace is connected yet.').waitFor();
  const requestUrl = page.getByRole('textbox', { name: 'Request URL' });
  expect(await requestUrl.inputValue() === `${base}webhooks/slack/events`, `the Request URL: ${await requestUrl.inputValue()}`);
  await page.getByText('A0KONSTRUCT').first().waitFor();
  await page.getByRole('button', { name: 'Copy the Request URL' }).click();
  await page.getByText('Copied to the clipboard.').waitFor();
  const clip = await page.evaluate(() => navigator.clipboard.readText());
  expect(clip === `${base}webhooks/slack/events`, `the clipboard holds the Request URL: ${clip}`);
  for (const scope of ['app_mentions:read', 'chat:write', 'im:history', 'files:read', 'users:read']) {
    await page.getByRole('listitem').getByText(scope, { exact: true }).first().waitFor();
  }

  const form = page.getByRole('form', { name: 'Connect a Slack workspace' });
  await form.getByLabel('Workspace id').fill('T0SMOKE01');
  await form.getByLabel('Bot user id').fill('U0SMOKE01');
  const token = form.getByLabel('Bot token');
  expect(await token.getAttribute('type') === 'password', 'the token is typed into a password field');
  await token.fill('xoxp-a-user-token-not-a-bot-1234');
  expect(await form.getByRole('combobox', { name: 'AI employee that answers' }).inputValue() !== '', 'an AI employee is picked');
  await form.getByRole('button', { name: 'Connect workspace' }).click();
  await form.getByRole('alert').filter({ hasText: 'a bot token, starting with xoxb-' }).waitFor();
  expect(await token.getAttribute('aria-invalid') === 'true', 'the token is marked invalid');
  expect(await form.getByLabel('Workspace id').getAttribute('aria-invalid') === 'false', 'the workspace id is fine');
  await page.getByText('No Slack workspace is connected yet.').waitFor();
  await shot(page, '12-channels-refused');

  // The workspace's own bot token: Slack (the fake) vouches for it, and it is connected.
  await form.getByLabel('Workspace id').fill(slack.team);
  await form.getByLabel('Bot user id').fill(slack.botUser);
  await token.fill(slack.token);
  await form.getByLabel('Workspace name (optional)').fill('Browser HQ');
  await form.getByRole('button', { name: 'Connect workspace' }).click();
  await page.getByRole('status').filter({ hasText: 'Connected Browser HQ.' }).waitFor();
  const row = page.getByRole('table', { name: 'Slack workspaces' }).getByRole('row').filter({ hasText: 'Browser HQ' });
  await row.waitFor();
  const text = await row.textContent();
  expect(text.includes(`…${slack.token.slice(-4)}`), `only the token's last characters are shown: ${text}`);
  expect(!text.includes(slack.token), 'the token itself is never shown');
  expect(text.includes('Nia') && text.includes('Connected'), `the row names the AI employee and the status: ${text}`);
  expect(await token.inputValue() === '', 'the form forgot the token');
  await shot(page, '12b-channels-connected');

  // The same workspace for another tenant: refused with a 409, said plainly.
  // Set up through the API beside the page, with the page's own cookie session.
  const auth = { 'X-CSRF-Token': await csrfToken(context) };
  const other = `Beta ${stamp}`;
  const beta = await (await context.request.post(`${base}api/tenants`, { headers: auth, data: { name: other } })).json();
  const hired = await context.request.post(`${base}api/tenants/${beta.id}/agents`, {
    headers: auth,
    data: { name: 'Bo', role: 'Support', persona: 'Calm.', system_prompt: 'Help.', job_description: '', model_preference: '', tools: [], escalation_rules: [], business_function: '' },
  });
  expect(hired.status() === 201, `agent in the other tenant: ${hired.status()}`);
  // The tenant switcher lists the tenants there were when the page loaded; the focus stays.
  await page.reload();
  await row.waitFor();
  await page.getByRole('combobox', { name: 'Tenant' }).selectOption({ label: other });
  await page.getByText('No Slack workspace is connected yet.').waitFor();
  await form.getByLabel('Workspace id').fill(slack.team);
  await form.getByLabel('Bot user id').fill(slack.botUser);
  await token.fill(slack.token);
  await form.getByRole('combobox', { name: 'AI employee that answers' }).selectOption({ label: 'Bo — Support' });
  await form.getByRole('button', { name: 'Connect workspace' }).click();
  await form.getByRole('alert').filter({ hasText: 'Already connected elsewhere.' }).waitFor();
  await form.getByRole('alert').filter({ hasText: 'already connected to another Konstruct account' }).waitFor();
  await shot(page, '12c-channels-conflict');

  // Back in the first tenant: disconnect, after a confirmation.
  await page.getByRole('combobox', { name: 'Tenant' }).selectOption({ label: tenantName });
  await row.waitFor();
  // Nothing typed for the other tenant is kept: not its token, not its error, not its AI employee.
  expect(await token.inputValue() === '', 'the other tenant\'s token is gone');
  expect(await form.getByText('Already connected elsewhere.').count() === 0, 'the other tenant\'s error is gone');
  const picked = await form.getByRole('combobox', { name: 'AI employee that answers' })
    .evaluate((select) => select.options[select.selectedIndex]?.text || '');
  expect(picked.startsWith('Nia'), `this tenant's AI employee is picked: ${picked}`);
  await page.getByRole('button', { name: 'Disconnect Browser HQ' }).click();
  const confirm = page.getByRole('group', { name: 'Confirm disconnecting' });
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  await confirm.waitFor({ state: 'detached' });
  await page.getByRole('button', { name: 'Disconnect Browser HQ' }).click();
  await confirm.getByRole('button', { name: 'Yes, disconnect' }).click();
  await page.getByRole('status').filter({ hasText: 'Disconnected Browser HQ.' }).waitFor();
  await row.filter({ hasText: 'Disconnected' }).waitFor();
  expect(await page.getByRole('button', { name: 'Disconnect Browser HQ' }).count() === 0, 'nothing left to disconnect');
  await shot(page, '12d-channels-disconnected');
});

await journey('customer admin: the Agent Designer keeps to the business (scope guard, examples, AI disclosure)', async (page, context) => {
  const me = await customerAdmin(context);
  await signIn(page, me.email, me.password);
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  await page.getByRole('link', { name: 'Nia' }).click();
  const guard = page.getByRole('combobox', { name: 'Scope guard' });
  await guard.waitFor();
  expect(await guard.inputValue() === 'whatsapp', `the default scope guard is WhatsApp: ${await guard.inputValue()}`);
  const disclosure = page.getByLabel('AI disclosure');
  expect((await disclosure.getAttribute('placeholder')).includes("I'm an AI assistant."), 'the default disclosure is shown as the placeholder');
  const examples = page.getByLabel('Requests it should take (one per line)');

  // An example too long for the check: refused inline, on that example.
  await examples.fill(`Where is my order?\n\n${'x'.repeat(301)}`);
  await page.getByText('2 of 50.').waitFor();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Please correct the marked fields.').waitFor();
  await page.getByRole('alert').filter({ hasText: 'Example 2: must be at most 300 characters' }).waitFor();
  expect(await examples.getAttribute('aria-invalid') === 'true', 'the examples are marked invalid');

  await page.getByLabel('Business function', { exact: true }).fill('Orders and deliveries of Acme widgets');
  await guard.selectOption({ label: 'On every channel' });
  await examples.fill('Where is my order?\nCan I still change the delivery address?\n');
  await disclosure.fill("Hi, I'm Nia, Acme's AI assistant. Say 'human' for a person.");
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
  await shot(page, '15-agent-designer-scope');

  // Saved for real: a reload shows it all.
  await page.reload();
  await guard.waitFor();
  expect(await guard.inputValue() === 'all_channels', `the scope guard was saved: ${await guard.inputValue()}`);
  expect(await examples.inputValue() === 'Where is my order?\nCan I still change the delivery address?', `the examples were saved: ${JSON.stringify(await examples.inputValue())}`);
  expect((await disclosure.inputValue()).startsWith("Hi, I'm Nia"), 'the disclosure was saved');
  expect(await page.getByLabel('Business function', { exact: true }).inputValue() === 'Orders and deliveries of Acme widgets', 'the business function was saved');
  await page.getByText('off-topic in the last 30 days').waitFor();

  // Back to the default guard, so the test chat of later journeys is not scope-checked.
  await guard.selectOption({ label: 'On WhatsApp (default)' });
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
});

await journey('customer admin: WhatsApp — a bad template and a wrong token refused inline, the right one connects with Meta\'s verified name, disconnect, own Meta app', async (page, context) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(base).origin });
  const me = await customerAdmin(context);
  await signIn(page, me.email, me.password);
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  await page.getByRole('link', { name: 'Channels' }).click();
  await page.getByRole('heading', { name: 'Channels' }).waitFor();
  await page.getByText('No WhatsApp number is connected yet.').waitFor();
  expect(await page.getByRole('note').filter({ hasText: 'Read-only' }).count() === 0, 'an admin is not read-only');

  // The setup guide: the platform app's callback URL, copied; the field to subscribe.
  const callback = page.getByRole('textbox', { name: 'Callback URL' });
  expect(await callback.inputValue() === `${base}webhooks/whatsapp`, `the callback URL: ${await callback.inputValue()}`);
  await page.getByRole('button', { name: 'Copy the callback URL' }).click();
  await page.getByText('Copied to the clipboard.').waitFor();
  expect(await page.evaluate(() => navigator.clipboard.readText()) === `${base}webhooks/whatsapp`, 'the clipboard holds the callback URL');
  const guide = page.getByRole('region', { name: 'Set up WhatsApp' });
  await guide.getByText('messages', { exact: true }).waitFor();
  await guide.getByText('permanent token').waitFor();
  await guide.getByText('KONSTRUCT_WHATSAPP_VERIFY_TOKEN').waitFor();

  const form = page.getByRole('form', { name: 'Connect a WhatsApp number' });
  await form.getByLabel('Phone number ID').fill(whatsapp.numberId);
  await form.getByLabel('WhatsApp Business Account ID').fill(whatsapp.wabaId);
  const token = form.getByLabel('Access token');
  expect(await token.getAttribute('type') === 'password', 'the token is typed into a password field');
  expect(await form.getByRole('combobox', { name: 'AI employee that answers' }).inputValue() !== '', 'an AI employee is picked');

  // A template whose name WhatsApp Manager would not have: refused on that template's field.
  await form.getByRole('button', { name: 'Add a template' }).click();
  const template = form.getByRole('group', { name: 'Template 1' });
  await template.getByLabel('Name').fill('Service follow-up');
  await template.getByLabel('Language').fill('en_US');
  await template.getByRole('button', { name: 'Add a variable' }).click();
  await template.getByRole('button', { name: 'Add a variable' }).click();
  await template.getByRole('combobox', { name: '{{2}}' }).selectOption({ label: 'the message' });
  await token.fill('EAAGnot-the-right-token-0000000000');
  await form.getByRole('button', { name: 'Connect number' }).click();
  await template.getByRole('alert').filter({ hasText: 'lowercase letters, digits and _' }).waitFor();
  expect(await template.getByLabel('Name').getAttribute('aria-invalid') === 'true', 'the template name is marked invalid');
  await form.getByText('Please correct the marked fields.').waitFor();

  // A wrong token: Meta (the fake) refuses it, and the form says so on the token.
  await template.getByLabel('Name').fill('service_follow_up');
  await form.getByRole('button', { name: 'Connect number' }).click();
  await form.getByRole('alert').filter({ hasText: 'Meta refused this access token' }).waitFor();
  expect(await token.getAttribute('aria-invalid') === 'true', 'the token is marked invalid');
  expect(await form.getByLabel('Phone number ID').getAttribute('aria-invalid') === 'false', 'the number id is fine');
  expect(await template.getByLabel('Name').getAttribute('aria-invalid') === 'false', 'the template is fine now');
  await page.getByText('No WhatsApp number is connected yet.').waitFor();
  await shot(page, '16-whatsapp-refused');

  // The number's own token: connected, with what Meta says the number is.
  await token.fill(whatsapp.token);
  await form.getByRole('button', { name: 'Connect number' }).click();
  await page.getByRole('status').filter({ hasText: `Connected ${whatsapp.display} (${whatsapp.verifiedName}). Its messages now go to Nia.` }).waitFor();
  const table = page.getByRole('table', { name: 'WhatsApp numbers' });
  const row = table.getByRole('row').filter({ hasText: whatsapp.verifiedName });
  await row.waitFor();
  const text = await row.textContent();
  expect(text.includes(whatsapp.display), `the display number Meta reports: ${text}`);
  expect(text.includes(`…${whatsapp.token.slice(-4)}`), `only the token's last characters are shown: ${text}`);
  expect(!text.includes(whatsapp.token), 'the token itself is never shown');
  expect(text.includes('Nia') && text.includes('Connected') && text.includes('No message yet'), `the AI employee, status and health: ${text}`);
  expect(text.includes('service_follow_up') && text.includes('{{1}} the customer\'s name, {{2}} the message'), `the template: ${text}`);
  expect(await token.inputValue() === '', 'the form forgot the token');
  expect(await form.getByRole('group', { name: 'Template 1' }).count() === 0, 'the form was emptied');
  await shot(page, '16b-whatsapp-connected');

  // Disconnect, after a confirmation.
  await page.getByRole('button', { name: `Disconnect ${whatsapp.display}` }).click();
  const confirm = page.getByRole('group', { name: 'Confirm disconnecting' });
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  await confirm.waitFor({ state: 'detached' });
  await page.getByRole('button', { name: `Disconnect ${whatsapp.display}` }).click();
  await confirm.getByRole('button', { name: 'Yes, disconnect' }).click();
  await page.getByRole('status').filter({ hasText: `Disconnected ${whatsapp.display}.` }).waitFor();
  await row.filter({ hasText: /Disconnected/ }).filter({ hasText: 'Erased' }).waitFor();
  expect(await page.getByRole('button', { name: `Disconnect ${whatsapp.display}` }).count() === 0, 'nothing left to disconnect');

  // Again, through the tenant's own Meta app: the number gets a webhook of its own.
  await form.getByLabel('Phone number ID').fill(whatsapp.numberId);
  await form.getByLabel('WhatsApp Business Account ID').fill(whatsapp.wabaId);
  await token.fill(whatsapp.token);
  expect(await form.getByLabel('App secret').count() === 0, 'no app secret without the own app');
  await form.getByLabel('I use my own Meta app').check();
  const secret = form.getByLabel('App secret');
  expect(await secret.getAttribute('type') === 'password', 'the app secret is typed into a password field');
  await secret.fill(whatsapp.ownAppSecret);
  await form.getByRole('button', { name: 'Connect number' }).click();
  await page.getByRole('status').filter({ hasText: 'Enter its callback URL and verify token' }).waitFor();
  const webhook = page.getByRole('group', { name: `Webhook of ${whatsapp.display}` });
  const own = webhook.getByRole('textbox', { name: 'Callback URL' });
  expect(await own.inputValue() === `${base}webhooks/whatsapp/${whatsapp.numberId}`, `the number's own callback URL: ${await own.inputValue()}`);
  const verify = await webhook.getByRole('textbox', { name: 'Verify token' }).inputValue();
  expect(/^[0-9a-f]{32,}$/.test(verify), `a verify token of its own: ${verify}`);
  await webhook.getByRole('button', { name: `Copy the verify token of ${whatsapp.display}` }).click();
  await webhook.getByText('Copied to the clipboard.').waitFor();
  expect(await page.evaluate(() => navigator.clipboard.readText()) === verify, 'the clipboard holds the verify token');
  expect(await secret.count() === 0, 'the app secret field is gone with the form reset');
  // (Case-sensitive: "Disconnected" is the first connection's row.)
  const live = table.getByRole('row').filter({ hasText: /Connected/ }).filter({ hasText: whatsapp.verifiedName });
  await live.waitFor();
  await shot(page, '16c-whatsapp-own-app');

  // Meta's check of that webhook (a GET with the verify token) is answered with its challenge:
  // the token shown is the one the server expects.
  const challenge = `challenge-${stamp}`;
  const check = await context.request.get(`${base}webhooks/whatsapp/${whatsapp.numberId}?hub.mode=subscribe&hub.verify_token=${verify}&hub.challenge=${challenge}`);
  expect(check.status() === 200 && await check.text() === challenge, `Meta's verification: ${check.status()}`);

  // A customer writes, through that app (signed with the secret typed above). The fake Meta never
  // saw the customer write, so it refuses the free-form answer (131047), and with no template
  // the reply cannot go out: the row shows the message and the error, each with its time.
  const body = JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: whatsapp.wabaId, changes: [{ field: 'messages', value: {
    messaging_product: 'whatsapp',
    metadata: { display_phone_number: whatsapp.display.replace(/\D/g, ''), phone_number_id: whatsapp.numberId },
    contacts: [{ profile: { name: 'Ana' }, wa_id: '15550001111' }],
    messages: [{ from: '15550001111', id: `wamid.browser${stamp}`, timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body: 'Where is my order?' } }],
  } }] }] });
  const signature = createHmac('sha256', whatsapp.ownAppSecret).update(body).digest('hex');
  const posted = await context.request.post(`${base}webhooks/whatsapp/${whatsapp.numberId}`, {
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': `sha256=${signature}` },
    data: body,
  });
  expect(posted.ok(), `the signed webhook was taken: ${posted.status()}`);
  // The health is noted as the turn runs and the reply is refused; nothing announces it to the
  // page, so the API is asked until both are there (or the deadline passes).
  const tenant = (await (await context.request.get(`${base}api/me`)).json()).memberships[0].tenant_id;
  let health = {};
  for (const deadline = Date.now() + 30000; Date.now() < deadline;) {
    const list = await (await context.request.get(`${base}api/tenants/${tenant}/channels/whatsapp`)).json();
    health = list.items.find((c) => c.status === 'active' && c.phone_number_id === whatsapp.numberId)?.health || {};
    if (health.last_received_at && health.last_error) break;
    await new Promise((resolve) => { setTimeout(resolve, 250); });
  }
  expect(health.last_received_at && health.last_error, `the message and the refused reply are in the health: ${JSON.stringify(health)}`);
  await page.reload();
  await live.waitFor();
  const healthy = await live.textContent();
  expect(/Last message (just now|1 minute ago)/.test(healthy), `the last message, in relative time: ${healthy}`);
  await table.getByText(health.last_error).first().waitFor();
  await table.getByText(/^Last error (just now|1 minute ago):/).first().waitFor();
  await shot(page, '16d-whatsapp-health');
});

await journey('knowledge: upload a FAQ, it indexes live and a question finds it; the operator reads only', knowledgeJourney);

await journey('tools: an HTTP tool with a secret header, inline schema errors, Try it, Nia calls it in the test chat; the operator reads only', toolsJourney);

await journey('customer operator: read-only agents and test chat, a forced edit is refused and the UI says so', async (page, context) => {
  // Set up an operator in the tenant through the API, as the platform admin.
  const api = context.request;
  const login = await api.post(`${base}api/auth/login`, { data: { email: adminEmail, password: adminPassword } });
  expect(login.ok(), `admin sign-in: ${login.status()}`);
  const token = (await login.json()).token;
  const auth = { authorization: `Bearer ${token}` };
  const tenants = await (await api.get(`${base}api/tenants?q=${encodeURIComponent(tenantName)}`, { headers: auth })).json();
  const tenant = tenants.items[0];
  expect(tenant, 'the tenant from the first journey exists');
  const operatorEmail = `operator-${stamp}@example.com`;
  const operatorPassword = `operator-password-${stamp}`;
  const created = await api.post(`${base}api/tenants/${tenant.id}/members`, {
    headers: auth,
    data: { email: operatorEmail, display_name: 'Olga Operator', password: operatorPassword, role: 'customer_operator' },
  });
  expect(created.status() === 201, `operator created: ${created.status()}`);
  await api.post(`${base}api/auth/logout`, { headers: auth });
  await context.clearCookies();

  await signIn(page, operatorEmail, operatorPassword);
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  await page.getByText('Read-only: your role can view AI employees but not change them.').waitFor();
  expect(await page.getByRole('link', { name: 'Hire an AI employee' }).count() === 0, 'no hire button');
  expect(await page.getByRole('link', { name: 'Tenants' }).count() === 0, 'no tenants page for operators');
  await shot(page, '05-operator-agents');
  await page.getByRole('link', { name: 'Nia' }).click();
  await page.getByRole('note').filter({ hasText: 'Read-only' }).waitFor();
  expect(await page.getByLabel('Persona', { exact: true }).isDisabled(), 'the form is read-only');
  expect(await page.getByRole('button', { name: 'Save' }).count() === 0, 'no save button');

  // Force it: enable the form and submit anyway. The server refuses; the UI says so.
  await page.evaluate(() => {
    document.querySelector('form.designer fieldset').disabled = false;
    document.querySelector('form.designer').requestSubmit();
  });
  await page.getByRole('alert').filter({ hasText: "You don't have permission" }).waitFor();
  await shot(page, '06-operator-refused');

  // Every test message costs an LLM call: an operator watches the test chat but cannot send.
  await page.getByRole('link', { name: 'Test chat' }).click();
  await page.getByRole('heading', { name: 'Test chat' }).waitFor();
  await page.getByRole('note').filter({ hasText: 'not send messages' }).waitFor();
  expect(await page.getByRole('button', { name: 'Send' }).count() === 0, 'no send button for operators');
  await shot(page, '06b-operator-test-chat');

  // Settings: seen, not changed.
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  await page.getByRole('note').filter({ hasText: 'Read-only' }).waitFor();
  await page.getByText('(Europe/Berlin)').waitFor();
  expect(await page.getByRole('combobox', { name: 'Time zone' }).isDisabled(), 'the time zone is read-only');
  expect(await page.getByRole('combobox', { name: 'Locale' }).isDisabled(), 'the locale is read-only');
  expect(await page.getByRole('button', { name: 'Save settings' }).count() === 0, 'no save button');
  await shot(page, '13-operator-settings');

  // Customers: operators read them.
  await page.getByRole('link', { name: 'Customers' }).click();
  await page.getByRole('table', { name: 'Customers' }).getByRole('row').filter({ hasText: 'Platform admin' }).waitFor();

  // Channels: the setup facts and the connected number, but no connect forms and nothing to
  // disconnect.
  await page.getByRole('link', { name: 'Channels' }).click();
  await page.getByRole('heading', { name: 'Channels' }).waitFor();
  await page.getByRole('note').filter({ hasText: 'Read-only' }).first().waitFor();
  await page.getByRole('textbox', { name: 'Request URL' }).waitFor();
  await page.getByRole('table', { name: 'Slack workspaces' }).getByRole('row').filter({ hasText: 'Browser HQ' }).waitFor();
  await page.getByRole('table', { name: 'WhatsApp numbers' }).getByRole('row')
    .filter({ hasText: whatsapp.verifiedName }).filter({ hasText: /Connected/ }).waitFor();
  expect(await page.getByRole('form', { name: 'Connect a Slack workspace' }).count() === 0, 'no Slack connect form for operators');
  expect(await page.getByRole('form', { name: 'Connect a WhatsApp number' }).count() === 0, 'no WhatsApp connect form for operators');
  expect(await page.getByRole('button', { name: /^Disconnect/ }).count() === 0, 'nothing to disconnect');
  expect(await page.getByRole('button', { name: /^Reconnect/ }).count() === 0, 'nothing to reconnect');
  await shot(page, '14-operator-channels');
});

// The mail server the runtime sends through (MailDev, started by e2e/browser.sh), read over its
// REST API.
const maildev = process.env.TEST_MAILDEV_URL || 'http://127.0.0.1:2580';

// The newest mail to `address` whose text carries a link to `linkPath`, waited for (mail goes
// out in the background), and that link, on the address the journeys use.
async function mailedLink(address, linkPath) {
  const pattern = new RegExp(`https?://\\S+${linkPath}#token=[A-Za-z0-9_-]+`);
  const deadline = Date.now() + 30000;
  for (;;) {
    let mails;
    try {
      const res = await fetch(`${maildev}/api/email`);
      expect(res.ok, `MailDev answered ${res.status}`);
      mails = await res.json();
    } catch (e) {
      throw new Error(`MailDev is not reachable at ${maildev} (e2e/browser.sh starts it and points KONSTRUCT_SMTP_URL at it): ${e}`);
    }
    const newest = mails
      .filter((m) => (m.to || []).some((t) => t.address.toLowerCase() === address.toLowerCase()))
      .filter((m) => pattern.test(m.text || ''))
      .sort((a, b) => new Date(a.time || a.date) - new Date(b.time || b.date))
      .at(-1);
    if (newest) {
      const link = new URL(newest.text.match(pattern)[0]);
      return { mail: newest, link: `${base}${link.pathname.slice(1)}${link.hash}` };
    }
    expect(Date.now() < deadline, `no mail to ${address} with a ${linkPath} link within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

// The colleague invited in the people journey, once they joined.
let colleague;

await journey("people: an admin invites a colleague, who joins from the mail and sees the operator's read-only view", async (page, context) => {
  const me = await customerAdmin(context);
  await signIn(page, me.email, me.password);
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  await page.getByRole('link', { name: 'Members' }).click();
  await page.getByRole('heading', { name: 'Members', exact: true }).waitFor();
  const members = page.getByRole('table', { name: 'Members' });
  await members.getByRole('row').filter({ hasText: me.email }).waitFor();
  // The tenant's only customer admin can be neither demoted nor removed, and the page says why.
  expect(await page.getByRole('combobox', { name: `Role of ${me.email}` }).isDisabled(), 'the last admin cannot be demoted');
  expect(await page.getByRole('button', { name: `Remove ${me.email}` }).isDisabled(), 'the last admin cannot be removed');
  await page.getByText('The last customer admin cannot be removed or demoted.').waitFor();

  // An address that is not one is refused inline, by the server.
  const invite = page.getByRole('form', { name: 'Invite someone' });
  await invite.getByLabel('Email').fill('not-an-address');
  await invite.getByRole('button', { name: 'Send invitation' }).click();
  await invite.getByText('Is not a valid email address').waitFor();

  const email = `colleague-${stamp}@example.com`;
  await invite.getByLabel('Email').fill(email);
  await invite.getByLabel('Role').selectOption('customer_operator');
  await invite.getByRole('button', { name: 'Send invitation' }).click();
  await invite.getByRole('status').filter({ hasText: `Invitation sent to ${email}.` }).waitFor();
  const pending = page.getByRole('table', { name: 'Pending invitations' }).getByRole('row').filter({ hasText: email });
  await pending.waitFor();
  expect((await pending.textContent()).includes('Customer operator (read-only)'), `invited as an operator: ${await pending.textContent()}`);
  // The list follows the mail by itself, without a reload, until it is out.
  await pending.filter({ hasText: /Sent|Failed/ }).waitFor({ timeout: 60000 });
  expect(!(await pending.textContent()).includes('Failed'), `the invitation mail went out: ${await pending.textContent()}`);
  await shot(page, '19a-members');

  // The same address again: the server's reason, in the form.
  await invite.getByLabel('Email').fill(email);
  await invite.getByRole('button', { name: 'Send invitation' }).click();
  await invite.getByRole('alert').filter({ hasText: 'already pending' }).waitFor();

  // The colleague opens the mailed link in a browser of their own.
  const { mail, link } = await mailedLink(email, '/invitation');
  expect(mail.subject.includes(tenantName), `the mail names the tenant: ${mail.subject}`);
  const theirs = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  try {
    const them = await theirs.newPage();
    them.setDefaultTimeout(15000);
    const errors = [];
    them.on('pageerror', (e) => errors.push(String(e)));
    await them.goto(link);
    await them.getByRole('heading', { name: `Join ${tenantName}` }).waitFor();
    await them.getByText('Ada Admin invited you').waitFor();
    const form = them.getByRole('form', { name: 'Create your account' });
    await form.getByLabel('Name').fill('Colin Colleague');
    const join = form.getByRole('button', { name: `Join ${tenantName}` });
    // Checked in the browser before anything is sent: too short, then not typed the same twice.
    await form.getByLabel('Password', { exact: true }).fill('too short');
    await form.getByLabel('Confirm password').fill('too short');
    await join.click();
    await form.getByText('Must be at least 12 characters').waitFor();
    const password = `colleague-password-${stamp}`;
    await form.getByLabel('Password', { exact: true }).fill(password);
    await form.getByLabel('Confirm password').fill(`${password}!`);
    await join.click();
    await form.getByText('Does not match the password above').waitFor();
    await form.getByLabel('Confirm password').fill(password);
    await shot(them, '19b-invitation');
    await join.click();

    // In the tenant, as a read-only operator: agents listed, nothing to hire, edit or manage.
    await them.getByRole('heading', { name: 'AI employees' }).waitFor();
    await them.getByRole('status').filter({ hasText: `Welcome to ${tenantName}.` }).waitFor();
    await them.getByText(`Working in ${tenantName}`).waitFor();
    await them.getByText('Customer operator (read-only)', { exact: true }).waitFor();
    await them.getByText('Read-only: your role can view AI employees but not change them.').waitFor();
    await them.getByRole('link', { name: 'Nia' }).waitFor();
    expect(await them.getByRole('link', { name: 'Hire an AI employee' }).count() === 0, 'no hire button for the operator');
    expect(await them.getByRole('link', { name: 'Members' }).count() === 0, 'no Members page for the operator');
    await shot(them, '19c-joined-as-operator');
    // The link worked once.
    await them.goto(link);
    await them.getByRole('alert').filter({ hasText: 'already been used' }).waitFor();
    await them.getByRole('link', { name: 'Go to sign-in' }).waitFor();
    expect(errors.length === 0, `errors in the colleague's page: ${errors.join('; ')}`);
    colleague = { email, password };
  } finally {
    await theirs.close();
  }

  // The admin sees the colleague as a member, and the invitation gone from the pending list.
  await page.reload();
  await members.getByRole('row').filter({ hasText: email }).waitFor();
  const role = page.getByRole('combobox', { name: `Role of ${email}` });
  await role.waitFor();
  expect(await role.inputValue() === 'customer_operator', `the colleague is an operator: ${await role.inputValue()}`);
  await page.getByRole('heading', { name: 'Pending invitations' }).waitFor();
  await page.getByText('Loading invitations…').waitFor({ state: 'detached' });
  expect(await page.getByRole('table', { name: 'Pending invitations' }).getByRole('row').filter({ hasText: email }).count() === 0, 'the accepted invitation is no longer pending');

  // Another invitation: resent (a new link, counted), then revoked after a confirmation.
  const typo = `typo-${stamp}@example.com`;
  await invite.getByLabel('Email').fill(typo);
  await invite.getByRole('button', { name: 'Send invitation' }).click();
  const typoRow = page.getByRole('table', { name: 'Pending invitations' }).getByRole('row').filter({ hasText: typo });
  await typoRow.waitFor();
  await page.getByRole('button', { name: `Resend to ${typo}` }).click();
  await page.getByRole('status').filter({ hasText: `Invitation sent to ${typo} again.` }).waitFor();
  await typoRow.getByRole('cell', { name: '2', exact: true }).waitFor();
  await page.getByRole('button', { name: `Revoke invitation to ${typo}` }).click();
  const confirm = page.getByRole('group', { name: 'Confirm revoking' });
  await confirm.getByRole('button', { name: 'Yes, revoke' }).click();
  await page.getByRole('status').filter({ hasText: `Revoked the invitation to ${typo}.` }).waitFor();
  await page.getByText('No pending invitations.').waitFor();
  await shot(page, '19d-members-joined');
});

await journey('people: a forgotten password is reset from the mailed link, then changed under Your account', async (page) => {
  expect(colleague, 'the colleague joined in the journey before');
  await page.goto(base);
  await page.getByRole('link', { name: 'Forgot your password?' }).click();
  const forgot = page.getByRole('form', { name: 'Forgot your password?' });
  await forgot.getByLabel('Email').fill(colleague.email);
  await forgot.getByRole('button', { name: 'Send reset link' }).click();
  await forgot.getByRole('status').filter({ hasText: 'If an account uses that address' }).waitFor();
  await shot(page, '19e-forgot-password');

  const { link } = await mailedLink(colleague.email, '/reset-password');
  await page.goto(link);
  await page.getByRole('heading', { name: `Choose a new password for ${colleague.email}` }).waitFor();
  const reset = page.getByRole('form', { name: 'Choose a new password' });
  const fresh = `reset-password-${stamp}`;
  await reset.getByLabel('New password', { exact: true }).fill(fresh);
  await reset.getByLabel('Confirm new password').fill(fresh);
  await reset.getByRole('button', { name: 'Set new password' }).click();
  await page.getByRole('status').filter({ hasText: 'Your password was changed. You were signed out everywhere else.' }).waitFor();
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  await page.getByText(`Working in ${tenantName}`).waitFor();

  // The link worked once.
  await page.goto(link);
  await page.getByRole('alert').filter({ hasText: 'already used' }).waitFor();
  await page.getByRole('link', { name: 'Ask for a new link' }).waitFor();

  // Your account: the server checks the current password; then a new one is set.
  await page.goto(base);
  await page.getByRole('link', { name: 'Your account' }).click();
  const change = page.getByRole('form', { name: 'Change your password' });
  const newer = `${fresh}-again`;
  await change.getByLabel('Current password').fill('not the password at all');
  await change.getByLabel('New password', { exact: true }).fill(newer);
  await change.getByLabel('Confirm new password').fill(newer);
  await change.getByRole('button', { name: 'Change password' }).click();
  await change.getByText('Is not your current password').waitFor();
  await change.getByLabel('Current password').fill(fresh);
  await change.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('status').filter({ hasText: 'Password changed. Your other sessions were signed out.' }).waitFor();
  await shot(page, '19f-account');

  // This session carries on; the new password signs in afresh.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('status').filter({ hasText: 'You are signed out.' }).waitFor();
  await signIn(page, colleague.email, newer);
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  colleague.password = newer;
});

// The platform admin writes to `agent` in the test chat, as a customer would: through the API
// with a bearer token of its own (no browser), so the inbox pages hear of it only live. Returns
// the test chat's conversation key.
async function customerSays(tenant, agent, text) {
  const login = await fetch(`${base}api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: adminEmail, password: adminPassword }),
  });
  expect(login.ok, `the customer's sign-in: ${login.status}`);
  const auth = { authorization: `Bearer ${(await login.json()).token}` };
  const sent = await fetch(`${base}api/tenants/${tenant}/agents/${agent}/messages`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ text, conversation: null }),
  });
  expect(sent.status === 202 || sent.ok, `the customer's message: ${sent.status}`);
  return { auth, conversation: (await sent.json()).conversation };
}

// What the customer sees in the test chat, waited for until it holds `text` (the person's reply
// goes out through the channel in the background).
async function customerReceives(tenant, agent, customer, text) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const res = await fetch(`${base}api/tenants/${tenant}/agents/${agent}/messages?conversation=${encodeURIComponent(customer.conversation)}`, { headers: customer.auth });
    expect(res.ok, `the customer's test chat: ${res.status}`);
    const messages = await res.json();
    if (messages.some((m) => m.direction === 'outbound' && m.text.includes(text))) return;
    expect(Date.now() < deadline, `the customer did not get the reply within 30 s: ${JSON.stringify(messages.map((m) => m.text))}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

// The hand-off inbox: a customer asks for a person and the conversation appears in the admin's
// inbox without a reload, with the badge; the admin reads the packet, claims it, answers and
// resolves it, while a second member (the read-only operator) watches the owner change live.
async function inboxJourney(page, context) {
  const other = await customerOperator(context);
  const me = await customerAdmin(context);
  await signIn(page, me.email, me.password);
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  const tenant = (await (await context.request.get(`${base}api/me`)).json()).memberships[0].tenant_id;
  // An AI employee that hands off when the customer asks for a person (a keyword rule, so the
  // fake LLM's answers do not matter), set up through the API beside the page.
  const hired = await context.request.post(`${base}api/tenants/${tenant}/agents`, {
    headers: { 'X-CSRF-Token': await csrfToken(context) },
    data: {
      name: 'Hana', role: 'Billing assistant', persona: 'Friendly.', system_prompt: 'Help with invoices.',
      escalation_rules: [{ trigger: { kind: 'keywords', keywords: ['talk to a person'] }, handoff_target: null }],
    },
  });
  expect(hired.status() === 201, `the AI employee: ${hired.status()}`);
  const agent = (await hired.json()).id;
  const before = await (await context.request.get(`${base}api/tenants/${tenant}/inbox/counts`)).json();

  await page.getByRole('link', { name: 'Inbox' }).click();
  await page.getByRole('heading', { name: 'Inbox', exact: true }).waitFor();
  expect(await page.getByRole('button', { name: 'Waiting for a person', pressed: true }).count() === 1, 'the inbox opens on who waits for a person');
  expect(await page.getByRole('note').filter({ hasText: 'Read-only' }).count() === 0, 'an admin is not read-only');
  // Desktop notifications are asked for only from the button, never on load (headless Chromium
  // may say they are blocked instead); mail about hand-offs is the member's own choice.
  const notify = page.getByRole('region', { name: 'Notifications' });
  await notify.getByText(/Enable desktop notifications|Desktop notifications are/).waitFor();
  await notify.getByRole('checkbox', { name: 'Email me about new hand-offs' }).check();
  await page.getByRole('status').filter({ hasText: 'You will get an email about each new hand-off' }).waitFor();

  // The second member watches every open conversation, read-only.
  const theirs = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  try {
    const them = await theirs.newPage();
    them.setDefaultTimeout(15000);
    const errors = [];
    them.on('pageerror', (e) => errors.push(String(e)));
    await signIn(them, other.email, other.password);
    await them.getByRole('heading', { name: 'AI employees' }).waitFor();
    await them.getByRole('link', { name: 'Inbox' }).click();
    await them.getByRole('heading', { name: 'Inbox', exact: true }).waitFor();
    await them.getByRole('note').filter({ hasText: 'Read-only' }).waitFor();
    await them.getByRole('button', { name: 'All open' }).click();
    await them.getByRole('button', { name: 'All open', pressed: true }).waitFor();

    // The customer asks for a person: the row appears in both inboxes by itself.
    const asked = `Can I talk to a person about invoice ${stamp}?`;
    const customer = await customerSays(tenant, agent, asked);
    const row = page.getByRole('table', { name: 'Conversations' }).getByRole('row').filter({ hasText: 'Hana' });
    await row.waitFor({ timeout: 30000 });
    const text = await row.textContent();
    expect(text.includes('Waiting') && text.includes('Test chat') && text.includes('Platform admin'), `the row says who waits, where: ${text}`);
    expect(text.includes('Handed off: A keyword rule'), `the row says why: ${text}`);
    const waiting = before.queue + 1;
    await page.getByRole('link', { name: `Inbox (${waiting} waiting for a person)` }).waitFor();
    await page.getByRole('status').filter({ hasText: 'handed off and is waiting for a person' }).waitFor();
    await shot(page, '20a-inbox-handoff-live');
    const theirRow = them.getByRole('table', { name: 'Conversations' }).getByRole('row').filter({ hasText: 'Hana' });
    await theirRow.filter({ hasText: 'Waiting' }).waitFor({ timeout: 30000 });

    // The admin opens it: the packet first, then what was said.
    await row.getByRole('link', { name: 'Platform admin' }).click();
    await page.getByRole('heading', { name: 'Conversation with Platform admin' }).waitFor();
    const packet = page.getByRole('region', { name: 'Hand-off' });
    await packet.getByText('Why', { exact: true }).waitFor();
    const transcript = page.getByRole('list', { name: 'Transcript' });
    await transcript.getByRole('listitem').filter({ hasText: asked }).waitFor();
    await shot(page, '20b-conversation-packet');

    await page.getByRole('button', { name: 'Claim' }).click();
    await page.getByRole('status').filter({ hasText: 'You have the conversation with Platform admin.' }).waitFor();
    await page.getByRole('button', { name: 'Claim' }).waitFor({ state: 'detached' });
    await transcript.getByRole('listitem').filter({ hasText: 'Claimed by Ada Admin' }).waitFor();
    // Nobody waits any more: the badge has gone down, live.
    const left = before.queue;
    await page.getByRole('link', { name: left ? `Inbox (${left} waiting for a person)` : /^Inbox$/ }).waitFor();

    // The second member sees who has it now, without a reload.
    await theirRow.filter({ hasText: 'Ada Admin' }).waitFor({ timeout: 30000 });
    expect(!(await theirRow.textContent()).includes('Waiting'), `no longer waiting: ${await theirRow.textContent()}`);
    await shot(them, '20c-second-member-sees-owner');

    // The suggested reply fills the composer; the admin writes their own and sends it.
    const composer = page.getByRole('textbox', { name: 'Your reply' });
    const suggested = packet.getByRole('button', { name: 'Use this reply' });
    if (await suggested.count()) {
      await suggested.click();
      expect((await composer.inputValue()).trim().length > 0, 'the suggested reply is in the composer');
    }
    const answer = `Hello, this is Ada: invoice ${stamp} is corrected.`;
    await composer.fill(answer);
    await page.getByRole('button', { name: 'Send reply' }).click();
    await page.getByRole('status').filter({ hasText: 'Reply sent to Platform admin.' }).waitFor();
    const sent = transcript.getByRole('listitem').filter({ hasText: answer });
    await sent.waitFor();
    expect((await sent.textContent()).includes('Ada Admin'), `the reply is the person's, not the AI's: ${await sent.textContent()}`);
    await customerReceives(tenant, agent, customer, answer);

    // A private note: in the transcript, never sent.
    await page.getByLabel('Private note', { exact: true }).check();
    const noteText = `Double charge on ${stamp}; refund issued.`;
    await page.getByRole('textbox', { name: 'Your private note' }).fill(noteText);
    await page.getByRole('button', { name: 'Add private note' }).click();
    await page.getByRole('status').filter({ hasText: 'Private note added.' }).waitFor();
    await transcript.getByRole('listitem').filter({ hasText: 'Private note' }).filter({ hasText: noteText }).waitFor();
    await shot(page, '20d-conversation-replied');

    await page.getByRole('button', { name: 'Resolve' }).click();
    await page.getByRole('status').filter({ hasText: 'Resolved the conversation with Platform admin.' }).waitFor();
    await page.getByRole('button', { name: 'Reopen' }).waitFor();
    // Resolved: it leaves the second member's open list, live.
    await theirRow.waitFor({ state: 'detached', timeout: 30000 });
    await shot(page, '20e-conversation-resolved');
    expect(errors.length === 0, `errors in the second member's page: ${errors.join('; ')}`);
  } finally {
    await theirs.close();
  }
}

await journey('inbox: a hand-off appears live, is claimed, answered and resolved; a second member sees the claim', inboxJourney);

// Cost control, as the customer admin lives it: the dashboard's chart shows what the tenant
// spent (the same total as the usage API), a monthly budget is set in the form, spend rises as
// the test chat is used, the 80 % alert arrives by mail and as a banner, and at 100 % the
// hand-off policy answers the next customer with a person; removing the budget lifts it.
async function usageJourney(page, context) {
  const me = await customerAdmin(context);
  await signIn(page, me.email, me.password);
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  const tenant = (await (await context.request.get(`${base}api/me`)).json()).memberships[0].tenant_id;
  const agents = await (await context.request.get(`${base}api/tenants/${tenant}/agents`)).json();
  const nia = (agents.items || agents).find((a) => a.name === 'Nia');
  expect(nia, 'Nia works here');
  const usage = async () => (await (await context.request.get(`${base}api/tenants/${tenant}/usage`)).json()).totals.platform;

  await page.getByRole('link', { name: 'Usage and cost' }).click();
  await page.getByRole('heading', { name: 'Usage and cost' }).waitFor();
  const costChart = page.locator('figure.chart').first();
  await costChart.waitFor();
  let totals = await usage();
  expect(totals.calls > 0, 'earlier journeys made calls');
  expect(await costChart.getAttribute('data-total') === String(totals.cost_micro_usd),
    `the cost chart adds up to the API's total ${totals.cost_micro_usd}: ${await costChart.getAttribute('data-total')}`);
  const days = (await (await context.request.get(`${base}api/tenants/${tenant}/usage`)).json()).series.length;
  expect(await page.locator('figure.chart').first().locator('rect.bar.cost').count() === days, `a bar for each of the month's ${days} days so far`);
  await shot(page, '40-usage-dashboard');

  // What one more test-chat message costs (each in a conversation of its own costs the same).
  const one = async (text) => {
    const customer = await customerSays(tenant, nia.id, text);
    await customerReceives(tenant, nia.id, customer, '');
    return customer;
  };
  const before = totals.cost_micro_usd;
  await one('How much is shipping?');
  await waitUntil(async () => (await usage()).cost_micro_usd > before, 'the spend rises');
  totals = await usage();
  const call = totals.cost_micro_usd - before;
  expect(call > 0, 'a call costs something');

  // A budget whose 80 % is two and a half calls away, and its 100 % a few calls more.
  const spent = totals.cost_micro_usd;
  const monthly = Math.ceil((spent + 2.5 * call) / 0.8);
  const form = page.getByRole('form', { name: 'Monthly budget' });
  await form.getByLabel('Monthly amount (US dollars)').fill((monthly / 1e6).toFixed(6));
  await form.getByLabel('At 100 %').selectOption('handoff');
  await form.getByRole('button', { name: 'Save budget' }).click();
  await page.getByRole('status').filter({ hasText: 'Budget saved' }).waitFor();
  await page.locator('.budget[data-percent]').first().waitFor();
  await shot(page, '41-budget-set');

  // Spend rises call by call; the dashboard shows it after a refresh.
  let crossed = false;
  for (let i = 0; i < 6 && !crossed; i += 1) {
    await one('How much is shipping?');
    await page.getByRole('button', { name: 'Refresh' }).click();
    const status = await (await context.request.get(`${base}api/tenants/${tenant}/budgets`)).json();
    crossed = status[0].crossed.includes(80);
  }
  expect(crossed, 'the 80 % threshold was crossed');
  await waitUntil(async () => Number(await costChart.getAttribute('data-total')) > spent, 'the chart shows the new spend');
  await page.getByRole('alert').filter({ hasText: 'reached 80 %' }).or(page.getByRole('alert').filter({ hasText: 'reached 100 %' })).first().waitFor();
  // The 80 % mail reaches the admin.
  await waitUntil(async () => {
    const mails = await (await fetch(`${maildev}/api/email`)).json();
    return mails.some((m) => (m.to || []).some((t) => t.address.toLowerCase() === me.email.toLowerCase())
      && (m.subject || '').includes('80 %'));
  }, 'the 80 % mail arrives', 30000);
  await shot(page, '42-budget-alert');

  // Past 100 %, the next customer is handed to a person with a polite message.
  let handedOff = false;
  for (let i = 0; i < 12 && !handedOff; i += 1) {
    const customer = await customerSays(tenant, nia.id, 'Can you help me?');
    const deadline = Date.now() + 30000;
    for (;;) {
      const res = await fetch(`${base}api/tenants/${tenant}/agents/${nia.id}/messages?conversation=${encodeURIComponent(customer.conversation)}`, { headers: customer.auth });
      const messages = (await res.json()).filter((m) => m.direction === 'outbound');
      if (messages.length) {
        handedOff = messages[0].text.includes('colleague');
        break;
      }
      expect(Date.now() < deadline, 'no reply within 30 s');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  expect(handedOff, 'at 100 % the customer is handed to a person');
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.getByRole('alert').filter({ hasText: 'reached 100 %' }).waitFor();
  await page.locator('.budget[data-percent]').first().scrollIntoViewIfNeeded();
  await shot(page, '43-budget-spent');

  // On a phone the page stays readable: charts stack, nothing overflows sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole('heading', { name: 'Usage and cost' }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow <= 1, `the page is ${overflow}px wider than a phone`);
  await shot(page, '44-usage-phone');
  await page.setViewportSize({ width: 1280, height: 860 });

  // Removing the budget lifts the policy (the later journeys chat as before).
  await form.getByRole('button', { name: 'Remove budget' }).click();
  await page.getByRole('status').filter({ hasText: 'Budget removed' }).waitFor();
  await waitUntil(async () => {
    const customer = await customerSays(tenant, nia.id, 'Still there?');
    const deadline = Date.now() + 30000;
    for (;;) {
      const res = await fetch(`${base}api/tenants/${tenant}/agents/${nia.id}/messages?conversation=${encodeURIComponent(customer.conversation)}`, { headers: customer.auth });
      const messages = (await res.json()).filter((m) => m.direction === 'outbound');
      if (messages.length) return !messages[0].text.includes('colleague');
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }, 'the AI answers again once the budget is removed', 30000);
}

await journey('usage: the chart shows the spend, a budget is set, spend rises, the 80 % alert is mailed and shown, at 100 % customers go to a person', usageJourney);

await journey('settings: an own OpenAI key is refused when wrong, checked and saved when right (hint only), and removed', async (page, context) => {
  const me = await customerAdmin(context);
  await signIn(page, me.email, me.password);
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByRole('heading', { name: 'LLM keys' }).waitFor();
  const card = page.getByLabel('OpenAI key', { exact: true });
  await card.getByText('Not set').waitFor();
  const form = page.getByRole('form', { name: 'OpenAI key form' });
  await form.getByLabel('Add an OpenAI key').fill('sk-wrong-key-0000000000');
  await form.getByRole('button', { name: 'Check and save' }).click();
  await form.getByRole('alert').filter({ hasText: /refused|rejected|not accepted/i }).waitFor();
  await card.getByText('Not set').waitFor();
  const key = process.env.LLM_KEY;
  expect(key, 'e2e/browser.sh passes the key the fake provider accepts');
  await form.getByLabel('Add an OpenAI key').fill(key);
  await form.getByRole('button', { name: 'Check and save' }).click();
  await page.getByRole('status').filter({ hasText: 'OpenAI accepted the key' }).waitFor();
  await card.getByText('Working').waitFor();
  const text = await page.locator('main').innerText();
  expect(!text.includes(key), 'the key is never shown back');
  expect(text.includes(key.slice(-4)), 'its last characters are');
  await shot(page, '45-llm-keys');
  await card.getByRole('button', { name: 'Remove' }).click();
  await page.getByRole('status').filter({ hasText: 'OpenAI key removed' }).waitFor();
  await card.getByText('Not set').waitFor();
});

await journey('impersonation: the banner appears and ends', async (page) => {
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('heading', { name: 'Tenants' }).waitFor();
  await page.getByRole('searchbox', { name: 'Search tenants' }).fill(tenantName);
  await page.getByRole('button', { name: `Impersonate ${tenantName}` }).click();
  const banner = page.getByRole('alert').filter({ hasText: 'You are acting as an admin of' });
  await banner.waitFor();
  expect((await banner.textContent()).includes(tenantName), 'the banner names the tenant');
  await page.getByRole('heading', { name: 'AI employees' }).waitFor();
  await shot(page, '07-impersonating');
  await page.getByRole('button', { name: 'Stop impersonating' }).click();
  await banner.waitFor({ state: 'detached' });
  // Back in the admin's own session, on the tenants page, still signed in.
  await page.getByRole('heading', { name: 'Tenants' }).waitFor();
  await page.getByRole('status').filter({ hasText: `You stopped impersonating ${tenantName}.` }).waitFor();
  await page.getByRole('link', { name: 'Tenants' }).waitFor();
  await page.getByText('Platform admin', { exact: true }).waitFor();
  await shot(page, '07b-impersonation-stopped');
  // The admin's own session cookie was never touched: a reload still signs in as the admin.
  await page.reload();
  await page.getByRole('heading', { name: 'Tenants' }).waitFor();
  expect(await banner.count() === 0, 'no banner after a reload');
  await page.getByRole('table').getByText(tenantName, { exact: true }).waitFor();
});

await journey('impersonation: signing out while impersonating signs out completely', async (page, context) => {
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('searchbox', { name: 'Search tenants' }).fill(tenantName);
  await page.getByRole('button', { name: `Impersonate ${tenantName}` }).click();
  await page.getByRole('alert').filter({ hasText: 'You are acting as an admin of' }).waitFor();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('status').filter({ hasText: 'You are signed out.' }).waitFor();
  // Neither session is left: the page asks to sign in again, and so does the API.
  await page.goto(base);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  const me = await context.request.get(`${base}api/me`);
  expect(me.status() === 401, `/api/me after signing out: ${me.status()}`);
});

await journey("impersonation: when it runs out, the banner goes and the admin's own session carries on", async (page, context) => {
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('heading', { name: 'Tenants' }).waitFor();
  // The shortest impersonation there is (one minute), started beside the page with its cookies.
  const started = await context.request.post(`${base}api/admin/impersonate`, {
    headers: { 'X-CSRF-Token': await csrfToken(context) },
    data: { tenant_id: await tenantId(context, tenantName), minutes: 1 },
  });
  expect(started.ok(), `impersonation started: ${started.status()}`);
  await page.reload();
  const banner = page.getByRole('alert').filter({ hasText: 'You are acting as an admin of' });
  await banner.waitFor();
  await banner.waitFor({ state: 'detached', timeout: 90000 });
  await page.getByRole('status').filter({ hasText: 'has ended. You are back in your own session.' }).waitFor();
  await page.getByRole('link', { name: 'Tenants' }).waitFor();
  await page.getByText('Platform admin', { exact: true }).waitFor();
});

await journey('audit trail: intact, the events filtered by an action with the CSV download to match, export the head, verify against it, inline errors', async (page) => {
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('heading', { name: 'Tenants' }).waitFor();
  await page.getByRole('searchbox', { name: 'Search tenants' }).fill(tenantName);
  await page.getByRole('button', { name: `Open ${tenantName}` }).click();
  await page.getByRole('link', { name: 'Audit trail' }).click();
  await page.getByRole('heading', { name: 'Audit trail' }).waitFor();
  await page.getByText('Intact', { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Verify chain' }).waitFor();

  // The events, newest first; narrowed to one action (the AI employee the first journey made).
  const events = page.getByRole('table', { name: 'Audit events' });
  await events.waitFor();
  await page.getByRole('combobox', { name: 'Action', exact: true }).selectOption('agent.created');
  await waitUntil(async () => {
    const cells = await events.locator('tbody tr td:nth-child(3)').allInnerTexts();
    return cells.length > 0 && cells.every((c) => c.trim() === 'agent.created');
  }, 'only agent.created events are listed');
  const csv = await page.getByRole('link', { name: 'Download CSV' }).getAttribute('href');
  expect(csv.includes('/audit/export.csv?') && csv.includes('action=agent.created'), `the download keeps the filter: ${csv}`);
  await shot(page, '08a-audit-events');
  await page.getByRole('button', { name: 'Clear filters' }).click();

  await page.getByRole('button', { name: 'Export head' }).click();
  const exported = page.getByLabel('Exported head (JSON)');
  await exported.waitFor();
  const head = JSON.parse(await exported.inputValue());
  expect(head.hash.length === 64 && head.sealed_through === head.seq, `a sealed head: ${JSON.stringify(head)}`);
  expect(await page.getByRole('link', { name: 'Download', exact: true }).getAttribute('download') === `audit-head-record-${head.seq}.json`, 'a download named after the record');
  await shot(page, '08a-audit-head');

  const pasted = page.getByLabel('Exported head', { exact: true });
  const check = page.getByRole('button', { name: 'Verify against this head' });
  await pasted.fill('not an exported head');
  await check.click();
  await page.getByText('This is not an exported head').waitFor();
  await pasted.fill(JSON.stringify({ seq: head.seq, hash: 'xyz' }));
  await check.click();
  await page.getByText('Hash: must be 64 hexadecimal characters').waitFor();
  await pasted.fill(JSON.stringify(head));
  await check.click();
  await page.getByText(`The head you exported (record ${head.seq}) is still in the trail, unchanged.`).waitFor();
  await shot(page, '08b-audit-verified');
});

await journey('phone-sized screen: the test chat stays usable', async (page) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('heading', { name: 'Tenants' }).waitFor();
  await page.getByRole('button', { name: `Open ${tenantName}` }).click();
  await page.getByRole('link', { name: 'Test chat' }).click();
  await page.getByLabel('Message').waitFor();
  await shot(page, '08-phone-test-chat');
  await page.getByRole('link', { name: 'Channels' }).click();
  await page.getByRole('textbox', { name: 'Request URL' }).waitFor();
  await shot(page, '08b-phone-channels');
  await page.getByRole('link', { name: 'Customers' }).click();
  await page.getByRole('table', { name: 'Customers' }).waitFor();
  await shot(page, '08c-phone-customers');
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByText('Local time now:').waitFor();
  await shot(page, '08d-phone-settings');
});

await journey('an ended session returns to sign-in with a message', async (page, context) => {
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('heading', { name: 'Tenants' }).waitFor();
  await context.clearCookies();
  await page.getByRole('searchbox', { name: 'Search tenants' }).fill('anything');
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByRole('status').filter({ hasText: 'Your session has ended. Please sign in again.' }).waitFor();
});

await journey('platform admin renames a tenant, and sign-out returns to sign-in', async (page) => {
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('searchbox', { name: 'Search tenants' }).fill(tenantName);
  // The unfiltered first page may show the same row: wait for the search's own answer (one
  // tenant), or the click lands on a row the answer then replaces.
  await page.getByText('Page 1 of 1 · 1 tenant', { exact: true }).waitFor();
  await page.getByRole('button', { name: `Rename ${tenantName}` }).click();
  const form = page.getByRole('form', { name: 'Rename tenant' });
  await form.getByLabel('New name').fill(`${tenantName} Ltd`);
  await form.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: `Renamed to ${tenantName} Ltd.` }).waitFor();
  await page.getByRole('table').getByText(`${tenantName} Ltd`, { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('status').filter({ hasText: 'You are signed out.' }).waitFor();
});

await browser.close();
console.log(`browser: ${passed} passed, ${failed} failed (screenshots in e2e/artifacts/screenshots)`);
process.exit(failed === 0 ? 0 : 1);
