import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';

import { NdustriaPanel } from './panel';

const OPEN = 'ndustria:open-panel';

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

export default plugin;
