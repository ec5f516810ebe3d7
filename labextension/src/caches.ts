import { el } from './format';
import { chosenCache, requestAPI, useCache } from './handler';

/** A cache folder the server shows (ndustria_nb/server/caches.py). */
export interface ICacheChoice {
  path: string;
  default: boolean;
  has_runs: boolean;
  kernels: { notebook: string; pid: number }[];
  last_used: number | null;
}

/**
 * The cache selector at the top of the sidebar: the server's own cache (the default) and every cache
 * a kernel with ndustria loaded uses. While the user has not chosen, a server cache without runs gives
 * way to the most recently used cache that has some.
 */
export class CacheSelector {
  readonly node = el('div', 'jp-ndustria-caches');
  private readonly select = el('select', 'jp-ndustria-cache-select');
  private readonly note = el('div', 'jp-ndustria-meta jp-ndustria-cache-note');
  private picked = false; // the user chose a cache: keep it
  private shown = '';

  constructor(onChange: () => void) {
    this.select.title = 'The cache folder shown';
    this.select.onchange = () => {
      this.picked = true;
      useCache(this.select.value);
      onChange();
    };
    this.node.append(el('label', 'jp-ndustria-meta', 'Cache '), this.select, this.note);
  }

  /** Reload the list (kernels come and go); returns the folder shown. */
  async refresh(): Promise<string> {
    const { caches } = await requestAPI<{ caches: ICacheChoice[] }>('caches');
    let current = caches.find(c => c.path === chosenCache()) ?? caches[0];
    if (!this.picked && current.default && !current.has_runs) {
      current = caches.find(c => c.has_runs) ?? current;
    }
    useCache(current.default ? '' : current.path);
    const signature = JSON.stringify([caches.map(c => [c.path, c.has_runs, c.kernels]), current.path]);
    if (signature !== this.shown) {
      this.shown = signature;
      this.select.replaceChildren(...caches.map(c => option(c, c === current)));
      this.select.title = current.path;
      this.note.textContent = describe(current, caches[0]);
    }
    return current.path;
  }
}

function option(cache: ICacheChoice, selected: boolean): HTMLOptionElement {
  const users = cache.kernels.map(k => k.notebook || `pid ${k.pid}`);
  const who = cache.default ? 'server default' : users.length ? users.join(', ') : 'no kernel now';
  const node = el('option', '', `${cache.path} (${who})`);
  node.value = cache.default ? '' : cache.path;
  node.title = cache.path;
  node.selected = selected;
  node.dataset.path = cache.path;
  return node;
}

function describe(current: ICacheChoice, server: ICacheChoice): string {
  if (current.default) {
    return '';
  }
  const users = current.kernels.map(k => k.notebook).filter(Boolean);
  const by = users.length ? `used by ${users.join(', ')}` : 'used by a kernel earlier';
  return server.has_runs ? by : `${by}; the server's cache ${server.path} has no runs yet`;
}
