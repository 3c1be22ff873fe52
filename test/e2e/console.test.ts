/**
 * The web console (issue 11 part 1) in a real browser — Debian's Chromium driven by playwright-core —
 * against `airlock serve` as it runs (real Docker engine, gateway and sandbox images, json-server as
 * the forum): log in, see a session created through the API, watch its decisions arrive live, see an
 * attacker-chosen path rendered as text, filter, kill the session from the page and see it end.
 * Screenshots go to $AIRLOCK_CONSOLE_SCREENSHOTS (docs/console/ when refreshing the docs) or a
 * temporary directory.
 */
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { parseConfig } from '../../src/config/load.js';
import { sandboxContainerName } from '../../src/runtime/docker/labels.js';
import { TestApi } from '../helpers/api-client.js';
import {
  docker,
  exists,
  networkGateway,
  removeAirlockObjects,
  requireDockerAndImages,
} from '../helpers/docker.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';
import { watchedLogger } from '../helpers/log-watch.js';

const CHROMIUM = '/usr/bin/chromium';
const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'console-e2e-token-0123456789';
/** The classic XSS probe as a path (no spaces on an HTTP request line: `/` separates attributes). */
const XSS_PATH = '/<img/src=x/onerror=alert(1)>';
/** The same probe as the issue writes it, as it would render if an audit event carried it raw. */
const RAW_XSS_PATH = '/<img src=x onerror=alert(1)>';
const ASK_RULE = 'p, analyst, forum.test:3000, /posts/1/comments, POST, ask';

let stateDir: string;
let auditFile: string;
let shots: string;
let ownShots = false;
let server: RunningServer;
let api: TestApi;
let forum: JsonServer;
let browser: BrowserContext;
let page: Page;
const dialogs: string[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} missing: scripts/setup.sh installs Debian's chromium`);
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-console-'));
  // The repository's policy plus one ask rule, so that a request waits for a person's approval.
  const policyDir = path.join(stateDir, 'policies');
  mkdirSync(policyDir);
  copyFileSync(path.resolve('policies/model.conf'), path.join(policyDir, 'model.conf'));
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    readFileSync(path.resolve('policies/policy.csv'), 'utf8') + `\n${ASK_RULE}\n`,
  );
  const cfg = parseConfig(
    {
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
      gateway: { hostAliases: { 'forum.test': 'host-gateway' }, allowPrivateCidrs: [EGRESS_SUBNET] },
      policy: { dir: policyDir },
      runtime: {
        docker: { egressSubnet: EGRESS_SUBNET },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
      stateDir,
    },
    process.cwd(),
  );
  auditFile = cfg.audit.file;
  server = await startServer(cfg, watchedLogger());
  api = new TestApi(server.url, TOKEN);
  shots = process.env.AIRLOCK_CONSOLE_SCREENSHOTS ?? '';
  if (shots) mkdirSync(shots, { recursive: true });
  else {
    shots = mkdtempSync(path.join(tmpdir(), 'airlock-console-shots-'));
    ownShots = true;
  }
  // A fresh profile directory each run (Playwright passes it as --user-data-dir); without the
  // background-networking flags Chromium tries to reach the (closed) Internet.
  browser = await chromium.launchPersistentContext(path.join(stateDir, 'chromium'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  // CSP violations are reported as DOM events; collected by a script the browser injects itself.
  await page.addInitScript({
    content:
      'window.__csp = []; document.addEventListener("securitypolicyviolation", ' +
      '(e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));',
  });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await removeAirlockObjects();
  await forum?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  if (ownShots && shots) rmSync(shots, { recursive: true, force: true });
});

async function shot(name: string): Promise<void> {
  const file = path.join(shots, name);
  await page.screenshot({ path: file, fullPage: true });
  expect(statSync(file).size).toBeGreaterThan(5_000);
}

/** curl in the sandbox through the gateway; returns the HTTP status. */
async function curl(id: string, args: string): Promise<number> {
  const out = await api.sh(id, `curl -s -o /dev/null -w '%{http_code}' ${args}`);
  return Number(out.stdout.trim());
}

describe('web console in Chromium', () => {
  let id: string;

  it('serves the page with a strict CSP; a wrong token is refused; the right one logs in', async () => {
    const res = await page.goto(`${server.url}/ui/`);
    expect(res?.status()).toBe(200);
    expect(res?.headers()['content-security-policy']).toContain("script-src 'self'");
    await page.locator('#token').fill('not-the-token-0123456789');
    await page.getByRole('button', { name: 'Log in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('not valid');
    await shot('login.png');
    await page.locator('#token').fill(TOKEN);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByTestId('connection').filter({ hasText: 'live' }).waitFor();
    expect(page.url()).toBe(`${server.url}/ui/`); // no token in the URL
    expect(await page.evaluate(() => sessionStorage.getItem('airlock.token'))).toBe(TOKEN);
    await page.getByText('signed in as e2e').waitFor();
  });

  it('shows a session created through the API, with role and creator', async () => {
    id = (await api.create({ role: 'analyst', ttlSeconds: 900 })).id;
    // The forum listens only on the egress bridge's host address, which exists once the gateway does.
    forum = await startJsonServer(await networkGateway('airlock-egress'), 3000);
    const row = page.locator(`tr[data-session="${id}"]`);
    await row.waitFor();
    expect(await row.locator('td').nth(1).textContent()).toBe('analyst');
    expect(await row.locator('td').nth(2).textContent()).toBe('e2e');
  });

  it("shows the session's decisions live, the attacker's path as text, and filters them", async () => {
    await page.locator(`tr[data-session="${id}"] button`).click();
    await page.getByTestId('session-state').filter({ hasText: 'live' }).waitFor();
    expect(await curl(id, 'http://forum.test:3000/posts/1')).toBe(200);
    const rows = page.locator('table.decisions tbody tr');
    await rows.filter({ hasText: '/posts/1' }).first().waitFor();
    expect(await curl(id, "-X POST -d '{}' http://forum.test:3000/comments")).toBe(403);
    await rows.filter({ hasText: '/comments' }).first().waitFor();
    // An attacker-controlled path, sent raw (curl --path-as-is): the gateway denies the POST and
    // audits the path (normalised: it percent-encodes "<" and ">"); the page shows it verbatim.
    expect(await curl(id, `-X POST --path-as-is 'http://forum.test:3000${XSS_PATH}'`)).toBe(403);
    const events = await api.auditUntil(id, (e) => e.some((x) => x.path.includes('onerror')));
    const probe = events.find((x) => x.path.includes('onerror')) as AuditEvent;
    const probeCell = page.locator('table.decisions td.path', { hasText: probe.path });
    await probeCell.first().waitFor();
    expect(await probeCell.first().textContent()).toBe(probe.path);
    // Defence in depth: an audit line whose path holds raw markup (the gateway never writes one)
    // must render as text too. Appended to the audit file the control plane follows.
    appendFileSync(
      auditFile,
      JSON.stringify({ ...probe, time: new Date().toISOString(), path: RAW_XSS_PATH, chain: undefined }) +
        '\n',
    );
    const rawCell = page.locator('table.decisions td.path', { hasText: 'onerror=alert(1)>' });
    await rawCell.first().waitFor();
    expect(await rawCell.first().textContent()).toBe(RAW_XSS_PATH);
    expect(await page.locator('img').count()).toBe(0);
    expect(dialogs).toEqual([]);

    const allow = rows.filter({ hasText: '/posts/1' }).first();
    expect(await allow.locator('td').nth(1).textContent()).toBe('GET');
    expect(await allow.locator('td').nth(2).textContent()).toBe('forum.test:3000');
    expect(await allow.locator('td').nth(4).textContent()).toContain('allow');
    expect(await allow.locator('td').nth(5).textContent()).toContain(
      'p, analyst, forum.test:3000, /*, GET, allow',
    );
    expect(await allow.locator('td').nth(6).textContent()).toMatch(/^\d+\.\d ms$/);

    await page.locator('.filters select').selectOption('deny');
    await expect.poll(() => rows.filter({ hasText: '/posts/1' }).count()).toBe(0);
    expect(await rows.filter({ hasText: '/comments' }).count()).toBeGreaterThan(0);
    await shot('session.png');
    await page.locator('.filters input').fill('no-such-host');
    await expect.poll(() => rows.count()).toBe(0);
    await page.locator('.filters input').fill('');
    await page.locator('.filters select').selectOption('all');
  });

  it('the overview groups denials by role/host/path and charts decisions per second', async () => {
    await page.getByRole('button', { name: '← all sessions' }).click();
    const denials = page.locator('section.denials tbody tr');
    await denials.filter({ hasText: '/comments' }).first().waitFor();
    const comments = denials.filter({ hasText: '/comments' }).first();
    expect(await comments.locator('td').nth(0).textContent()).toBe('analyst');
    expect(await comments.locator('td').nth(3).textContent()).toBe('POST');
    expect(await page.locator('section.denials img').count()).toBe(0);
    expect(await page.locator('.chart svg rect.deny').count()).toBeGreaterThan(0);
    expect(await page.locator('.chart svg rect.allow').count()).toBeGreaterThan(0);
    const row = page.locator(`tr[data-session="${id}"]`);
    // Counts: GET /posts/1 allowed; POST /comments, the probe and the raw line denied.
    await expect.poll(async () => row.locator('td').nth(7).textContent()).toBe('3');
    expect(await row.locator('td').nth(6).textContent()).toBe('1');
    const rawGroup = denials.filter({ hasText: 'onerror=alert(1)>' }).first();
    expect(await rawGroup.locator('td').nth(2).textContent()).toBe(RAW_XSS_PATH);
    await page.getByTestId('policy').getByText('ok', { exact: true }).waitFor();
    await shot('overview.png');
  });

  it('shows a pending approval with its request body; approving it lets the same request through', async () => {
    const post = `-X POST -H 'content-type: application/json' -d '{"body":"<b>please</b> approve"}' http://forum.test:3000/posts/1/comments`;
    expect(await curl(id, post)).toBe(403); // approval_required: nothing forwarded yet
    const card = page.getByTestId('approvals').locator('[data-approval]');
    await card.first().waitFor();
    expect(await card.first().textContent()).toContain('POST http://forum.test:3000/posts/1/comments');
    expect(await card.first().locator('pre.body').textContent()).toBe('{"body":"<b>please</b> approve"}');
    expect(await page.locator('section.approvals b').count()).toBe(0); // the body is text, not HTML
    expect(await card.first().textContent()).toContain(ASK_RULE);
    await card.first().getByRole('button', { name: 'Approve' }).click();
    expect(await card.first().getByRole('alert').textContent()).toBe('A reason is required.');
    await shot('approvals.png');
    await card.first().locator('input').fill('reviewed in the console e2e test');
    await card.first().getByRole('button', { name: 'Approve' }).click();
    await expect.poll(() => card.count()).toBe(0);
    expect(await curl(id, post)).toBe(201); // the same request, now forwarded once
    const events = await api.auditUntil(id, (e) => e.some((x) => x.reason === 'approved'));
    expect(events.find((x) => x.reason === 'approved')).toMatchObject({
      method: 'POST',
      path: '/posts/1/comments',
    });
  });

  it('kill asks for confirmation, then the session ends: gateway refuses it, sandbox gone', async () => {
    await page.locator(`tr[data-session="${id}"] button`).click();
    await page.getByRole('button', { name: 'Kill session' }).click();
    const confirm = page.getByRole('alertdialog', { name: 'Confirm kill' });
    await confirm.waitFor();
    await shot('kill-confirm.png');
    await confirm.getByRole('button', { name: 'Cancel' }).click();
    expect((await api.raw('GET', `/v1/sessions/${id}`)).status).toBe(200); // cancel kills nothing
    await page.getByRole('button', { name: 'Kill session' }).click();
    await page.getByRole('button', { name: 'Yes, kill it' }).click();
    await page.getByTestId('session-state').filter({ hasText: 'ended' }).waitFor();
    expect((await api.raw('GET', `/v1/sessions/${id}`)).status).toBe(404);
    expect(await exists('container', sandboxContainerName(id))).toBe(false);
    expect((await docker.listContainers({ filters: { name: [sandboxContainerName(id)] } })).length).toBe(0);
  });

  it('no CSP violation, no script error, no dialog on the whole visit; log out forgets the token', async () => {
    expect(await page.evaluate('window.__csp')).toEqual([]);
    expect(pageErrors).toEqual([]);
    expect(dialogs).toEqual([]);
    await page.getByRole('button', { name: '← all sessions' }).click();
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.locator('#token').waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('airlock.token'))).toBeNull();
  });
});
