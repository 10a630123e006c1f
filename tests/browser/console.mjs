// Drives the local console (GET /_local/) in Debian's Chromium as a person at it would: creates a
// referral as the advisor, reads the offer on the agent's phone, texts the code back from that
// phone, and waits for the claim on the referral's timeline. Prints {referralId, code} as JSON.
// Settings come from the environment (see tests/web.rs); any failure exits non-zero.
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const WAIT = { timeout: 120_000 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // Chromium's own calls home are refused on a closed network; these keep it from trying.
  // Playwright gives each launch a fresh, empty profile (user data dir) of its own.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  await page.goto(`${env('API_URL')}/_local/`);

  await page.fill('#advisor-sub', env('ADVISOR_ID'));
  await page.fill('#advisor-email', `${env('ADVISOR_ID')}@referrals.example.com`);
  const form = page.locator('#new-referral');
  await form.locator('[name=program]').selectOption('routing');
  await form.locator('[name=teamId]').fill(env('TEAM_ID'));
  await form.locator('[name=clientType]').selectOption('seller');
  await form.locator('[name=zip]').fill(env('ZIP'));
  await form.locator('[name=clientPhone]').fill(env('CLIENT_PHONE'));
  await form.locator('[name=clientEmail]').fill(env('CLIENT_EMAIL'));
  await form.locator('button').click();
  await page.locator('#created', { hasText: 'created ' }).waitFor(WAIT);
  const referralId = (await page.locator('#created').textContent()).replace('created ', '').trim();

  // The offer arrives on the agent's phone, with the claim code.
  const phone = page.locator(`[data-phone="${env('AGENT_PHONE')}"]`);
  const offer = phone.locator('.sms', { hasText: 'Reply #' }).first();
  await offer.waitFor(WAIT);
  const code = /Reply (#\d+)/.exec(await offer.textContent())?.[1];
  if (!code) throw new Error(`no claim code in the offer: ${await offer.textContent()}`);

  // The agent answers from that phone with the code.
  const reply = phone.locator('form.text-service:not(.dial)');
  await reply.locator('input[name=body]').fill(`${code} Hi Casey, happy to help`);
  await reply.locator('button').click();
  await phone.locator('.sms.sent', { hasText: code }).waitFor(WAIT);

  // The referral's timeline shows the claim, refreshed by itself.
  const card = page.locator(`[data-referral="${referralId}"]`);
  await card.locator('.badge.assigned', { hasText: env('AGENT_ID') }).waitFor(WAIT);
  await card.locator('li[data-type="claim_attempt"]').first().waitFor(WAIT);
  // The rest of the agent's text reaches the client's phone.
  await page.locator(`[data-phone="${env('CLIENT_PHONE')}"] .sms`, { hasText: 'happy to help' }).waitFor(WAIT);

  await page.screenshot({ path: env('SCREENSHOT'), fullPage: true });
  if (problems.length) throw new Error(problems.join('\n'));
  console.log(JSON.stringify({ referralId, code }));
} finally {
  await browser.close();
}
