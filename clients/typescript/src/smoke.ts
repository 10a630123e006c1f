// Calls a running stack through the client once, as the apps do: an agent saves a profile, an
// admin makes them a team's lead, an advisor creates a referral for the team, the agent claims
// it. Run by the system test `typescript_client_*` (tests/web.rs) with the tokens it signs.
import { referralsClient, type Schemas } from "./index.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const baseUrl = env("API_URL");
const agentId = env("AGENT_ID");
const teamId = env("TEAM_ID");
const zip = env("ZIP");
const as = (token: string) => referralsClient({ baseUrl, token: () => token });
const agent = as(env("AGENT_TOKEN"));
const admin = as(env("ADMIN_TOKEN"));
const advisor = as(env("ADVISOR_TOKEN"));

function fail(step: string, status: number, error: unknown): never {
  throw new Error(`${step}: ${status} ${JSON.stringify(error)}`);
}

const profile: Schemas["ProfileRequest"] = {
  name: "Tess Script",
  email: env("AGENT_EMAIL"),
  cellPhone: env("AGENT_PHONE"),
  licensed: true,
  zips: [zip],
  clientTypes: ["seller"],
  timeZone: "America/Los_Angeles",
};
const saved = await agent.PUT("/agents/{agentId}", {
  params: { path: { agentId } },
  body: profile,
});
if (!saved.data) fail("PUT /agents/{agentId}", saved.response.status, saved.error);

const team = await admin.PUT("/teams/{teamId}", {
  params: { path: { teamId } },
  body: { name: "Script team", leadAgentId: agentId, agentIds: [agentId] },
});
if (!team.data) fail("PUT /teams/{teamId}", team.response.status, team.error);

const created = await advisor.POST("/referrals", {
  body: {
    program: "routing",
    teamId,
    client: { name: "Casey Script", phone: env("CLIENT_PHONE"), email: env("CLIENT_EMAIL") },
    clientType: "seller",
    zip,
    priceRange: { min: "600000", max: "800000" },
    timeline: "1-3 months",
    briefing: "Selling a 3-bed Victorian",
  },
});
if (created.response.status !== 201 || !created.data) {
  fail("POST /referrals", created.response.status, created.error);
}
const referralId: string = created.data.id;

const claimed = await agent.POST("/referrals/{id}/claim", {
  params: { path: { id: referralId } },
  body: {},
});
if (!claimed.data || !("agentId" in claimed.data)) {
  fail("POST /referrals/{id}/claim", claimed.response.status, claimed.error);
}
if (claimed.data.agentId !== agentId || claimed.data.referralId !== referralId) {
  fail("POST /referrals/{id}/claim", claimed.response.status, claimed.data);
}
console.log(JSON.stringify({ referralId, assignedTo: claimed.data.agentId }));
