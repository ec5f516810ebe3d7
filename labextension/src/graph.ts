import * as dagre from '@dagrejs/dagre';

import { duration, el } from './format';
import { requestAPI } from './handler';

/** One task of a run (ndustria_nb/server/graph.py). */
export interface IGraphNode {
  key: string;
  task: string;
  function: string;
  status: string;
  duration: number | null;
  computed_in: number | null;
  error: string | null;
}

export interface IGraph {
  run_id: number;
  pipeline: string;
  nodes: IGraphNode[];
  edges: [string, string][] | null;
  total: number;
}

const SVG = 'http://www.w3.org/2000/svg';
const NODE_W = 140;
const NODE_H = 38;
/** What a node says: a task that ran, was found in the cache, failed... */
const LABEL: { [status: string]: string } = { done: 'ran', cached: 'cached', failed: 'failed' };

/**
 * The task graph of a run, laid out by dagre (@dagrejs/dagre: layered, top to bottom) and drawn as SVG:
 * each node is one task, coloured by its state, with its duration; hover for the whole call.
 */
export class GraphView {
  private shown = '';
  private readonly section = el('div', 'jp-ndustria-graph');

  /** The graph of run `runId`, drawn again only when something in it changed. */
  async render(runId: number): Promise<HTMLElement> {
    const graph = await requestAPI<IGraph>(`runs/${runId}/graph`);
    const signature = JSON.stringify(graph);
    if (signature !== this.shown) {
      this.shown = signature;
      this.section.replaceChildren(el('h3', '', 'Task graph'), ...draw(graph));
      this.section.dataset.runId = String(graph.run_id);
    }
    return this.section;
  }
}

function draw(graph: IGraph): Node[] {
  if (!graph.nodes.length) {
    return [el('p', 'jp-ndustria-empty', 'This run has no tasks.')];
  }
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'TB', nodesep: 14, ranksep: 28, marginx: 4, marginy: 4 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of graph.nodes) {
    g.setNode(node.key, { width: NODE_W, height: NODE_H });
  }
  for (const [from, to] of graph.edges ?? []) {
    g.setEdge(from, to);
  }
  dagre.layout(g);
  const { width = NODE_W, height = NODE_H } = g.graph();
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'jp-ndustria-graph-svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', String(width));
  svg.style.maxWidth = '100%';
  svg.append(arrowhead());
  for (const e of g.edges()) {
    const points = g.edge(e).points as { x: number; y: number }[];
    const path = svgEl('path', 'jp-ndustria-edge');
    path.setAttribute('marker-end', 'url(#jp-ndustria-arrow)');
    path.setAttribute('d', points.map((p, i) => `${i ? 'L' : 'M'}${p.x},${p.y}`).join(' '));
    svg.append(path);
  }
  for (const node of graph.nodes) {
    svg.append(drawNode(node, g.node(node.key)));
  }
  const notes: Node[] = [legend(graph)];
  if (graph.edges === null) {
    notes.push(el('p', 'jp-ndustria-meta', 'Recorded before ndustria kept the edges of a run: tasks only.'));
  }
  if (graph.total > graph.nodes.length) {
    notes.push(el('p', 'jp-ndustria-meta', `The first ${graph.nodes.length} of ${graph.total} tasks.`));
  }
  const box = el('div', 'jp-ndustria-graph-box');
  box.append(svg);
  return [box, ...notes];
}

function drawNode(node: IGraphNode, at: { x: number; y: number }): SVGElement {
  const group = svgEl('g', `jp-ndustria-node jp-ndustria-node-${node.status}`);
  group.dataset.status = node.status;
  group.dataset.key = node.key;
  group.setAttribute('transform', `translate(${at.x - NODE_W / 2},${at.y - NODE_H / 2})`);
  const rect = svgEl('rect', '');
  rect.setAttribute('width', String(NODE_W));
  rect.setAttribute('height', String(NODE_H));
  rect.setAttribute('rx', '5');
  const name = text(node.task, 7, 15, 'jp-ndustria-node-name');
  const state = LABEL[node.status] ?? node.status;
  const took = node.duration === null ? '' : ` · ${duration(node.duration)}`;
  const detail = text(`${state}${took}`, 7, 30, 'jp-ndustria-node-detail');
  const title = svgEl('title', '');
  const source = node.computed_in ? ` (computed in run #${node.computed_in})` : '';
  title.textContent = `${node.task}\n${state}${took}${source}${node.error ? `\n${node.error}` : ''}`;
  group.append(title, rect, name, detail);
  return group;
}

function arrowhead(): SVGElement {
  const defs = svgEl('defs', '');
  const marker = svgEl('marker', '');
  marker.setAttribute('id', 'jp-ndustria-arrow');
  for (const [name, value] of [['viewBox', '0 0 10 10'], ['refX', '10'], ['refY', '5'], ['markerWidth', '6'],
    ['markerHeight', '6'], ['orient', 'auto-start-reverse']]) {
    marker.setAttribute(name, value);
  }
  const tip = svgEl('path', 'jp-ndustria-arrowhead');
  tip.setAttribute('d', 'M 0 0 L 10 5 L 0 10 z');
  marker.append(tip);
  defs.append(marker);
  return defs;
}

function legend(graph: IGraph): HTMLElement {
  const counts = new Map<string, number>();
  for (const node of graph.nodes) {
    counts.set(node.status, (counts.get(node.status) ?? 0) + 1);
  }
  const parts = [...counts].map(([status, n]) => `${n} ${LABEL[status] ?? status}`);
  return el('p', 'jp-ndustria-meta jp-ndustria-legend', parts.join(' · '));
}

function text(content: string, x: number, y: number, className: string): SVGElement {
  const node = svgEl('text', className);
  node.setAttribute('x', String(x));
  node.setAttribute('y', String(y));
  node.textContent = content.length > 18 ? `${content.slice(0, 17)}…` : content;
  return node;
}

function svgEl(tag: string, className: string): SVGElement {
  const node = document.createElementNS(SVG, tag) as SVGElement;
  if (className) {
    node.setAttribute('class', className);
  }
  return node;
}
