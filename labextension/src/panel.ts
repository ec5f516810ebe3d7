import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { CacheSelector } from './caches';
import { age, duration, el, middle, size, when } from './format';
import { GraphView } from './graph';
import { IEntry, IRun, ITask, requestAPI } from './handler';

const ACTIVE_MS = 2000; // refresh period while a run is active
const IDLE_MS = 3000; // otherwise, to notice a run that starts

/** The ndustria sidebar: recent runs, the tasks of the selected run, and the cache. */
export class NdustriaPanel extends Widget {
  private view: 'runs' | 'cache' = 'runs';
  private selected: number | null = null;
  private pinned: number | null = null; // a run the user picked; null: follow the newest run
  private timer = 0;
  private readonly body = el('div', 'jp-ndustria-body');
  private readonly status = el('div', 'jp-ndustria-status');
  private readonly tabs: { [name: string]: HTMLButtonElement } = {};
  private readonly caches = new CacheSelector(() => {
    this.selected = this.pinned = null; // another cache: follow its newest run
    void this.refresh();
  });
  private readonly graph = new GraphView();

  constructor() {
    super();
    this.id = 'ndustria-panel';
    this.title.label = 'ndustria';
    this.title.caption = 'ndustria pipelines: runs, tasks and cache';
    this.addClass('jp-ndustria-panel');
    const bar = el('div', 'jp-ndustria-toolbar');
    for (const name of ['runs', 'cache'] as const) {
      const button = el('button', 'jp-ndustria-tab', name === 'runs' ? 'Runs' : 'Cache');
      button.onclick = () => this.showView(name);
      this.tabs[name] = button;
      bar.append(button);
    }
    const refresh = el('button', 'jp-ndustria-refresh', '⟳');
    refresh.title = 'Refresh';
    refresh.onclick = () => void this.refresh();
    bar.append(refresh);
    this.node.append(bar, this.caches.node, this.status, this.body);
    this.showView('runs');
  }

  /** Switch between the runs and the cache view. */
  showView(view: 'runs' | 'cache'): void {
    this.view = view;
    for (const [name, button] of Object.entries(this.tabs)) {
      button.classList.toggle('jp-mod-active', name === view);
    }
    void this.refresh();
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  protected onBeforeHide(): void {
    window.clearTimeout(this.timer);
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  /** Reload the current view; schedule the next reload while visible. */
  async refresh(): Promise<void> {
    window.clearTimeout(this.timer);
    let active = false;
    try {
      await this.caches.refresh();
      active = this.view === 'runs' ? await this.renderRuns() : await this.renderCache();
      this.status.textContent = '';
    } catch (error) {
      this.body.replaceChildren();
      this.status.textContent = (error as Error).message;
    }
    if (this.isVisible && !this.isDisposed) {
      this.timer = window.setTimeout(() => void this.refresh(), active ? ACTIVE_MS : IDLE_MS);
    }
  }

  private async renderRuns(): Promise<boolean> {
    const { runs } = await requestAPI<{ runs: IRun[] }>('runs');
    const newest = runs.length ? runs[0].run_id : null;
    if (this.pinned !== null && !runs.some(r => r.run_id === this.pinned)) {
      this.pinned = null; // the picked run is gone from the list: follow again
    }
    this.selected = this.pinned ?? newest; // a run that starts while the panel is open is shown at once
    const list = el('div', 'jp-ndustria-runs');
    for (const run of runs) {
      list.append(this.runRow(run, newest));
    }
    const nodes: Node[] = [runs.length ? list : el('p', 'jp-ndustria-empty', 'No runs yet.')];
    const run = runs.find(r => r.run_id === this.selected);
    if (run) {
      const { tasks } = await requestAPI<{ tasks: ITask[] }>(`runs/${run.run_id}/tasks`);
      nodes.push(this.taskTable(run, tasks), await this.graph.render(run.run_id));
    }
    this.body.replaceChildren(...nodes);
    return runs.some(r => r.state === 'running');
  }

  private runRow(run: IRun, newest: number | null): HTMLElement {
    const c = run.counts;
    const parts = [`${c.total} tasks`, `${c.done} run`, `${c.cached} cached`];
    if (c.failed) {
      parts.push(`${c.failed} failed`);
    }
    if (c.skipped) {
      parts.push(`${c.skipped} skipped`);
    }
    if (c.running || c.queued) {
      parts.push(`${c.running} running, ${c.queued} queued`);
    }
    const took = run.end ? ` · ${duration(run.end - run.start)}` : '';
    const name = el('span', 'jp-ndustria-name', `#${run.run_id} ${run.pipeline}`);
    name.title = `run ${run.run_id} of ${run.pipeline} on ${run.host ?? 'this host'}`;
    const row = el(
      'div',
      'jp-ndustria-run',
      el('div', 'jp-ndustria-run-head', name, badge(run.state)),
      el('div', 'jp-ndustria-meta', `${when(run.start)}${took} · ${run.backend} ×${run.workers}`),
      el('div', 'jp-ndustria-meta jp-ndustria-counts', parts.join(' · '))
    );
    row.dataset.runId = String(run.run_id);
    row.classList.toggle('jp-mod-selected', run.run_id === this.selected);
    row.onclick = () => {
      this.pinned = run.run_id === newest ? null : run.run_id; // picking the newest means: keep following
      void this.refresh();
    };
    return row;
  }

  private taskTable(run: IRun, tasks: ITask[]): HTMLElement {
    const headers = ['Task', 'Status', 'Time', 'Peak mem', 'Engine'];
    const head = el('tr', '', ...headers.map(h => el('th', h === 'Engine' ? 'jp-ndustria-engine' : '', h)));
    const table = el('table', 'jp-ndustria-table jp-ndustria-tasks', el('thead', '', head));
    const rows = el('tbody');
    for (const t of tasks) {
      const name = el('td', 'jp-ndustria-task-name', middle(t.task));
      const origin = t.computed_by
        ? `cache hit: numbers of run ${t.computed_by.run_id} (${t.computed_by.pipeline}, ${when(t.computed_by.started)})`
        : '';
      name.title = [t.task, t.engine ? `engine: ${t.engine}` : '', origin, t.error ?? ''].filter(x => x).join('\n');
      const time = el('td', 'jp-ndustria-num jp-ndustria-time', duration(t.duration));
      time.title = 'wall time';
      const memory = el('td', 'jp-ndustria-num jp-ndustria-mem', size(t.peak_memory));
      memory.title = 'peak memory';
      for (const value of t.computed_by ? [time, memory] : []) {
        value.classList.add('jp-ndustria-earlier'); // recorded when an earlier run computed it
        value.title = origin;
      }
      const row = el(
        'tr',
        'jp-ndustria-task',
        name,
        el('td', 'jp-ndustria-state', badge(t.status)),
        time,
        memory,
        el('td', 'jp-ndustria-engine', t.engine ?? '—')
      );
      row.dataset.status = t.status;
      rows.append(row);
      if (t.error && t.status === 'failed') {
        const error = el('td', 'jp-ndustria-error', lastLine(t.error));
        error.colSpan = 5;
        error.title = t.error;
        rows.append(el('tr', 'jp-ndustria-error-row', error));
      }
    }
    table.append(rows);
    const title = el('h3', '', el('span', 'jp-ndustria-title', `Run #${run.run_id}: ${run.pipeline}`));
    title.title = `run ${run.run_id} of ${run.pipeline}`;
    if (this.pinned !== null) {
      const follow = el('button', 'jp-ndustria-follow', 'Follow newest');
      follow.title = 'Show the newest run, and each run that starts';
      follow.onclick = () => {
        this.pinned = null;
        void this.refresh();
      };
      title.append(follow);
    }
    return el('div', 'jp-ndustria-section', title, table);
  }

  private async renderCache(): Promise<boolean> {
    const { entries } = await requestAPI<{ entries: IEntry[] }>('cache');
    if (!entries.length) {
      this.body.replaceChildren(el('p', 'jp-ndustria-empty', 'The cache is empty.'));
      return false;
    }
    const head = el('tr', '', ...['Task', 'Size', 'Age', 'Used', ''].map(h => el('th', '', h)));
    const rows = el('tbody');
    const now = Date.now() / 1000;
    for (const e of entries) {
      const remove = el('button', 'jp-ndustria-delete', '✕');
      remove.title = `Delete ${e.task} from the cache`;
      remove.onclick = () => void this.remove(e);
      const name = el('td', 'jp-ndustria-task-name', middle(e.task));
      name.title = `${e.task}\nkey ${e.key}`;
      const row = el(
        'tr',
        'jp-ndustria-entry',
        name,
        cell('jp-ndustria-size', size(e.size), 'size'),
        cell('jp-ndustria-age', age(e.age), 'stored this long ago'),
        cell('jp-ndustria-used', age(now - e.last_used), 'last used this long ago'),
        el('td', 'jp-ndustria-action', remove)
      );
      row.dataset.key = e.key;
      rows.append(row);
    }
    const total = entries.reduce((sum, e) => sum + e.size, 0);
    this.body.replaceChildren(
      el('table', 'jp-ndustria-table jp-ndustria-cache', el('thead', '', head), rows),
      el('p', 'jp-ndustria-meta', `${entries.length} entries, ${size(total)} · most recently used first`)
    );
    return false;
  }

  private async remove(entry: IEntry): Promise<void> {
    const answer = await showDialog({
      title: 'Delete cache entry',
      body: `Delete the cached result of ${entry.task}? It will be recomputed when needed.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!answer.button.accept) {
      return;
    }
    try {
      await requestAPI(`cache/${encodeURIComponent(entry.key)}`, { method: 'DELETE' });
    } catch (error) {
      this.status.textContent = (error as Error).message;
      return;
    }
    await this.refresh();
  }
}

function badge(status: string): HTMLElement {
  const node = el('span', `jp-ndustria-badge jp-ndustria-${status}`, status);
  node.dataset.status = status;
  return node;
}

function cell(kind: string, text: string, title: string): HTMLElement {
  const node = el('td', `jp-ndustria-num ${kind}`, text);
  node.title = title;
  return node;
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1];
}
