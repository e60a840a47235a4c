// Browser journeys through the portal, driven by playwright-core in Debian's Chromium (headless)
// against the real runtime (real Postgres and Redis, fake LLM). Elements are found by role and
// label, as a person using a screen reader would find them. Screenshots of the main pages go to
// e2e/artifacts/screenshots/.
//
// Usage: node e2e/browser/journeys.mjs BASE_URL ADMIN_EMAIL ADMIN_PASSWORD
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
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

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

const stamp = Date.now().toString(36);
const tenantName = `Acme ${stamp}`;

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
  await page.getByRole('link', { name: 'Tenants' }).waitFor();
});

await journey('audit trail: intact, export the head, verify against it, inline errors', async (page) => {
  await signIn(page, adminEmail, adminPassword);
  await page.getByRole('heading', { name: 'Tenants' }).waitFor();
  await page.getByRole('searchbox', { name: 'Search tenants' }).fill(tenantName);
  await page.getByRole('button', { name: `Open ${tenantName}` }).click();
  await page.getByRole('link', { name: 'Audit trail' }).click();
  await page.getByRole('heading', { name: 'Audit trail' }).waitFor();
  await page.getByText('Intact', { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Export head' }).click();
  const exported = page.getByLabel('Exported head (JSON)');
  await exported.waitFor();
  const head = JSON.parse(await exported.inputValue());
  expect(head.hash.length === 64 && head.sealed_through === head.seq, `a sealed head: ${JSON.stringify(head)}`);
  expect(await page.getByRole('link', { name: 'Download' }).getAttribute('download') === `audit-head-record-${head.seq}.json`, 'a download named after the record');
  await shot(page, '08a-audit-trail');

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
