// The API client: the bearer token, JSON requests, and a banner while the API cannot be reached.

const TOKEN_KEY = "gridhub.token";
const RETRY_MS = 2000;

export class ApiError extends Error {
  constructor(status, detail, etag) {
    super(detail);
    this.status = status;
    this.etag = etag;
  }
}

export function takeTokenFromUrl() {
  // `gridhub up` prints the console's address with the token after '#': fragments never reach a server log.
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) { sessionStorage.setItem(TOKEN_KEY, token); }
export function clearToken() { sessionStorage.removeItem(TOKEN_KEY); }
export function token() { return sessionStorage.getItem(TOKEN_KEY); }

let offline = false;
const listeners = new Set();
export function onConnectivity(listener) { listeners.add(listener); }
function connectivity(up) {
  if (offline === !up) return;
  offline = !up;
  listeners.forEach((listener) => listener(up));
}

// A request; network failures are retried until the API answers again (the banner says so meanwhile).
export async function request(path, { method = "GET", body, headers = {}, raw = false } = {}) {
  for (;;) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: {
          Authorization: `Bearer ${token()}`,
          ...(body !== undefined && !(body instanceof Blob) ? { "Content-Type": "application/json" } : {}),
          ...headers,
        },
        body: body === undefined ? undefined : (body instanceof Blob ? body : JSON.stringify(body)),
      });
    } catch (error) {
      connectivity(false);
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      continue;
    }
    if (response.status === 502 || response.status === 503 || response.status === 504) {
      if (method !== "GET") connectivity(true);
      else {
        connectivity(false);
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        continue;
      }
    } else {
      connectivity(true);
    }
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail ?? detail; } catch { /* not JSON */ }
      throw new ApiError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail),
                         response.headers.get("ETag"));
    }
    if (raw) return response;
    return response.status === 204 ? null : response.json();
  }
}

export const get = (path, params) => request(params ? `${path}?${new URLSearchParams(clean(params))}` : path);
export const post = (path, body, headers) => request(path, { method: "POST", body, headers });

function clean(params) {
  return Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
}

// An image of the API (evidence, snapshots) as an object URL: <img src> cannot send the bearer token.
// The promise is cached, so a prefetch and a display of the same image share one fetch and one object URL.
const images = new Map();
export function imageUrl(path) {
  if (!images.has(path)) {
    const url = request(path, { raw: true }).then(async (response) => URL.createObjectURL(await response.blob()));
    url.catch(() => { if (images.get(path) === url) images.delete(path); });  // a failed image is asked again
    images.set(path, url);
    if (images.size > 300) {  // an hour of review must not grow without bound
      const [oldest, evicted] = images.entries().next().value;
      images.delete(oldest);
      evicted.then(URL.revokeObjectURL, () => {});
    }
  }
  return images.get(path);
}
