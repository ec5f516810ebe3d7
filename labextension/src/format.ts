/** Human-readable sizes, durations and ages for the panel. */

export function size(n: number | null): string {
  if (n === null || n === undefined) {
    return '—';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  // three significant digits at most: "512 B", "1.5 KiB", "32 MiB", never wider than "1023 KiB"
  return i === 0 || n >= 10 ? `${Math.round(n)} ${units[i]}` : `${n.toFixed(1)} ${units[i]}`;
}

export function duration(s: number | null): string {
  if (s === null || s === undefined) {
    return '—';
  }
  if (s < 0.001) {
    return `${Math.round(s * 1e6)} µs`;
  }
  if (s < 1) {
    return `${Math.round(s * 1000)} ms`;
  }
  if (s < 60) {
    return s < 10 ? `${s.toFixed(1)} s` : `${Math.round(s)} s`;
  }
  return age(s);
}

/** How long ago, compactly: "8 s", "12 min", "3 h", "2 d". */
export function age(s: number): string {
  s = Math.max(0, s);
  for (const [unit, n] of [['d', 86400], ['h', 3600], ['min', 60]] as [string, number][]) {
    if (s >= n) {
      return `${Math.round(s / n)} ${unit}`;
    }
  }
  return `${Math.round(s)} s`;
}

/** A run's start: the time today, else the day and time. */
export function when(epoch: number): string {
  const date = new Date(epoch * 1000);
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  if (date.toDateString() === new Date().toDateString()) {
    return time;
  }
  return `${date.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

/**
 * A name that, when too long for its cell, is cut in the middle: its head shrinks behind an ellipsis
 * and its tail (the last argument, "(N=2048))") stays whole. The text itself stays complete.
 */
export function middle(text: string): HTMLElement {
  const cut = tailStart(text);
  const head = el('span', 'jp-ndustria-head', text.slice(0, cut));
  const tail = el('span', 'jp-ndustria-tail', text.slice(cut));
  // the head leaves room for the tail (names are set in a monospace font: a character is 1ch); both are
  // inline boxes, so the name reads whole when copied
  head.style.maxWidth = `calc(100% - ${text.length - cut}ch)`;
  return el('span', 'jp-ndustria-middle', head, tail);
}

function tailStart(text: string): number {
  const keep = Math.min(14, Math.floor(text.length / 2));
  const from = text.length - keep;
  for (const mark of ['(', '=', ',', ' ', '_']) {
    const at = text.indexOf(mark, from);
    if (at >= 0 && at < text.length - 2) {
      return at;
    }
  }
  return from;
}

/** A DOM element with a class and children (strings become text). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  node.append(...children);
  return node;
}
