import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

import { CellStates } from './cells';
import { NdustriaPanel } from './panel';

const OPEN = 'ndustria:open-panel';
const RUN_STALE = 'ndustria:run-stale-cells';

/** The ndustria sidebar, its command and its place in the restored layout. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'ndustria-labextension:plugin',
  description: 'A sidebar showing ndustria runs, their tasks and the cache.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new NdustriaPanel();
    app.shell.add(panel, 'left', { rank: 600 });
    app.commands.addCommand(OPEN, {
      label: 'ndustria: Open pipeline panel',
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: OPEN, category: 'ndustria' });
    restorer?.add(panel, 'ndustria-panel');
  }
};

/** The state of each %%task and %%ndustria cell in its margin, and "ndustria: run stale cells". */
const cells: JupyterFrontEndPlugin<void> = {
  id: 'ndustria-labextension:cells',
  description: 'Shows whether %%task and %%ndustria cells are cached or stale, and runs the stale ones.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, palette: ICommandPalette | null) => {
    const states = new WeakMap<NotebookPanel, CellStates>();
    tracker.widgetAdded.connect((_, notebook) => {
      states.set(notebook, new CellStates(notebook));
    });
    app.commands.addCommand(RUN_STALE, {
      label: 'ndustria: run stale cells',
      caption: 'Run, in notebook order, the stale %%task/%%ndustria cells and the cells that depend on them',
      isEnabled: () => tracker.currentWidget !== null,
      execute: async () => {
        const notebook = tracker.currentWidget;
        const cellStates = notebook ? states.get(notebook) : undefined;
        if (!notebook || !cellStates) {
          return;
        }
        const stale = await cellStates.staleCells();
        if (stale === null) {
          Notification.warning(
            'ndustria: no cell states from this kernel yet. Run the cell with `%load_ext ndustria` first.',
            { autoClose: 5000 }
          );
          return;
        }
        if (!stale.length) {
          Notification.info('ndustria: no stale cells.', { autoClose: 3000 });
          return;
        }
        await NotebookActions.runCells(notebook.content, stale, notebook.sessionContext);
      }
    });
    palette?.addItem({ command: RUN_STALE, category: 'ndustria' });
    app.contextMenu.addItem({ command: RUN_STALE, selector: '.jp-Notebook', rank: 20 });
  }
};

export default [plugin, cells];
