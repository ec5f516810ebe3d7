import { Cell, CodeCell } from '@jupyterlab/cells';
import { Notebook, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';

/** The kernel's comm target (ndustria_nb/kernel.py, registered by `%load_ext ndustria`). */
const TARGET = 'ndustria.cells';
/** Cells whose state is asked for; any edit of the notebook asks again once typing pauses. */
const MARKED = /^\s*%%(task|ndustria)\b/;
const DEBOUNCE_MS = 700;
const REPLY_MS = 60000; // a deadlock guard only: the kernel answers once it is idle

/** What the kernel says about one cell (ndustria_nb/cellstate.py). */
export interface ICellState {
  state: string; // cached | stale | never run | failed | uncacheable | unknown (and running, ours)
  why: string[];
  label: string;
}

interface IReply {
  reply: 'states';
  seq: number;
  cells?: { [id: string]: ICellState };
  stale?: string[];
  busy?: boolean;
  error?: string;
}

/**
 * The states of one notebook's `%%task` and `%%ndustria` cells, shown as a marker in each cell's
 * left margin (hover: why), kept up to date after edits and executions.
 */
export class CellStates {
  private comm: Kernel.IComm | null = null;
  private connecting: Promise<boolean> | null = null;
  private seq = 0;
  private timer = 0;
  private readonly pending = new Map<number, (reply: IReply | null) => void>();
  private readonly running = new Set<string>();
  private states: { [id: string]: ICellState } = {};
  private asking: Promise<IReply | null> | null = null; // one request at a time: a busy kernel queues them
  private again = false; // something changed while a request was out
  private disposed = false;

  constructor(readonly panel: NotebookPanel) {
    const session = panel.sessionContext;
    session.kernelChanged.connect(this.reset, this);
    session.statusChanged.connect((_, status) => {
      if (status === 'restarting' || status === 'dead' || status === 'starting') {
        this.reset();
      }
    }, this);
    NotebookActions.executionScheduled.connect(this.onScheduled, this);
    NotebookActions.executed.connect(this.onExecuted, this);
    panel.content.modelContentChanged.connect(() => this.schedule(), this);
    panel.disposed.connect(() => this.dispose());
    void session.ready.then(() => this.schedule());
  }

  dispose(): void {
    this.disposed = true;
    window.clearTimeout(this.timer);
    NotebookActions.executionScheduled.disconnect(this.onScheduled, this);
    NotebookActions.executed.disconnect(this.onExecuted, this);
    this.comm?.dispose();
  }

  /** Ask again in a moment (edits come in bursts). */
  schedule(delay = DEBOUNCE_MS): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.update(), delay);
  }

  /** Ask the kernel for fresh states and show them; the reply, or null if there is no answer. */
  async update(): Promise<IReply | null> {
    if (this.disposed || !this.codeCells().some(c => MARKED.test(c.model.sharedModel.getSource()))) {
      this.show({});
      return null;
    }
    if (!(await this.connect())) {
      return null;
    }
    if (this.asking) {
      this.again = true;
      return this.asking.then(() => this.update());
    }
    this.again = false;
    this.asking = this.ask();
    const reply = await this.asking.finally(() => (this.asking = null));
    if (this.again) {
      this.schedule(0); // the notebook changed meanwhile: this answer is already old
    }
    if (reply && reply.busy) {
      return reply; // a cell is running: its `executed` signal asks again
    }
    if (reply && reply.cells) {
      this.show(reply.cells);
    }
    return reply;
  }

  /** The cells "ndustria: run stale cells" runs, in notebook order (fresh from the kernel). */
  async staleCells(): Promise<Cell[] | null> {
    window.clearTimeout(this.timer);
    const reply = await this.update();
    if (!reply || !reply.stale) {
      return null;
    }
    const wanted = new Set(reply.stale);
    return this.panel.content.widgets.filter(cell => wanted.has(cell.model.id));
  }

  private codeCells(): Cell[] {
    return this.panel.content.widgets.filter(cell => cell.model.type === 'code');
  }

  /** Open the comm unless it is open; false while the kernel has not loaded ndustria. */
  private connect(): Promise<boolean> {
    if (this.comm && !this.comm.isDisposed) {
      return Promise.resolve(true);
    }
    if (!this.connecting) {
      this.connecting = this.open().finally(() => (this.connecting = null));
    }
    return this.connecting;
  }

  private async open(): Promise<boolean> {
    const kernel = this.panel.sessionContext.session?.kernel;
    if (!kernel) {
      return false;
    }
    const comm = kernel.createComm(TARGET);
    let closed = false;
    comm.onClose = () => {
      closed = true; // an unknown target: ndustria is not loaded in this kernel (yet)
      if (this.comm === comm) {
        this.comm = null;
      }
      this.answerAll(null);
    };
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => {
      const data = msg.content.data as unknown as IReply;
      const resolve = this.pending.get(data.seq);
      this.pending.delete(data.seq);
      resolve?.(data);
    };
    try {
      await comm.open({}).done;
    } catch {
      return false;
    }
    if (closed || comm.isDisposed) {
      return false;
    }
    this.comm = comm;
    return true;
  }

  private ask(): Promise<IReply | null> {
    const comm = this.comm;
    if (!comm) {
      return Promise.resolve(null);
    }
    const seq = ++this.seq;
    const cells = this.codeCells().map(c => ({ id: c.model.id, source: c.model.sharedModel.getSource() }));
    return new Promise(resolve => {
      const guard = window.setTimeout(() => {
        this.pending.delete(seq);
        resolve(null);
      }, REPLY_MS);
      this.pending.set(seq, reply => {
        window.clearTimeout(guard);
        resolve(reply);
      });
      try {
        comm.send({ request: 'states', seq, cells });
      } catch {
        this.pending.delete(seq);
        resolve(null);
      }
    });
  }

  private answerAll(reply: IReply | null): void {
    for (const resolve of this.pending.values()) {
      resolve(reply);
    }
    this.pending.clear();
  }

  private reset(): void {
    this.comm = null;
    this.running.clear();
    this.answerAll(null);
    this.show({});
  }

  private onScheduled(_: unknown, args: { notebook: Notebook; cell: Cell }): void {
    if (args.notebook === this.panel.content && MARKED.test(args.cell.model.sharedModel.getSource())) {
      this.running.add(args.cell.model.id);
      this.show(this.states);
    }
  }

  private onExecuted(_: unknown, args: { notebook: Notebook; cell: Cell }): void {
    if (args.notebook !== this.panel.content) {
      return;
    }
    this.running.delete(args.cell.model.id);
    this.show(this.states);
    this.schedule(50);
  }

  /** Put each cell's marker in its margin (and take away the markers of cells no longer marked). */
  private show(states: { [id: string]: ICellState }): void {
    this.states = states;
    for (const cell of this.panel.content.widgets) {
      const id = cell.model.id;
      const state: ICellState | undefined = this.running.has(id)
        ? { state: 'running', why: ['running now'], label: '' }
        : states[id];
      marker(cell, state);
    }
  }
}

function marker(cell: Cell, state: ICellState | undefined): void {
  let node = cell.node.querySelector(':scope > .jp-ndustria-cellstate') as HTMLElement | null;
  if (!state || !(cell instanceof CodeCell)) {
    node?.remove();
    cell.removeClass('jp-ndustria-marked');
    return;
  }
  if (!node) {
    node = document.createElement('div');
    node.className = 'jp-ndustria-cellstate';
    cell.node.append(node);
    cell.addClass('jp-ndustria-marked');
  }
  node.dataset.state = state.state;
  node.textContent = state.state;
  node.title = [`ndustria: ${state.state}`, ...state.why.map(line => `• ${line}`)].join('\n');
}
