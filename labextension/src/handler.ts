import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

let cache = ''; // the cache folder the sidebar shows ('': the server's own)

/** Show cache folder `path` from now on ('': the server's own cache). */
export function useCache(path: string): void {
  cache = path;
}

export function chosenCache(): string {
  return cache;
}

/**
 * Call the ndustria server extension: `requestAPI('runs')` fetches `<base>/ndustria/api/runs`
 * (of the cache chosen with `useCache`). Errors carry the server's `{code, message}` message.
 */
export async function requestAPI<T>(endPoint = '', init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  let url = URLExt.join(settings.baseUrl, 'ndustria', 'api', endPoint);
  if (cache && endPoint !== 'caches') {
    url += `${url.includes('?') ? '&' : '?'}cache=${encodeURIComponent(cache)}`;
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    // not JSON: keep the text
  }
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, data.message || text);
  }
  return data as T;
}

export interface IRun {
  run_id: number;
  pipeline: string;
  start: number;
  end: number | null;
  state: string;
  backend: string;
  workers: number;
  host?: string;
  counts: { [status: string]: number };
}

export interface ITask {
  key: string;
  task: string;
  function: string;
  status: string;
  duration: number | null;
  peak_memory: number | null;
  engine: string | null;
  error: string | null;
  /** For a cache hit: the run whose numbers (duration, peak memory) these are. */
  computed_by?: { run_id: number; pipeline: string; started: number } | null;
}

export interface IEntry {
  key: string;
  task: string;
  size: number;
  age: number;
  last_used: number;
}
