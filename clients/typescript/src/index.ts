// The referral-routing API's typed client: `paths` is generated from infra/openapi.yaml
// (`npm run generate`), openapi-fetch turns it into typed calls:
//
//   const api = referralsClient({ baseUrl: "https://api.example.com", token: () => idToken });
//   const { data, error, response } = await api.POST("/referrals", { body: newReferral });
//
// `data` is the documented success body, `error` the documented error body
// (`{error: {code, message}}`), by the status the API answered.
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths };
export type Schemas = components["schemas"];
export type ApiError = Schemas["Error"];

export interface ClientOptions {
  /** The HTTP API's base URL, e.g. `http://127.0.0.1:3000` locally. */
  baseUrl: string;
  /** The caller's Cognito ID token (its `sub` and `custom:role` decide what it may do). */
  token?: () => string | undefined | Promise<string | undefined>;
  /** A fetch of your own (React Native, tests); the platform's by default. */
  fetch?: typeof globalThis.fetch;
}

export function referralsClient(options: ClientOptions): Client<paths> {
  const client = createClient<paths>({
    baseUrl: options.baseUrl,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const auth: Middleware = {
    async onRequest({ request }) {
      const token = await options.token?.();
      if (token) request.headers.set("authorization", `Bearer ${token}`);
      return request;
    },
  };
  client.use(auth);
  return client;
}
