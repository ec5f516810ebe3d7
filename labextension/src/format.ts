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
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

export function duration(s: number | null): string {
  if (s === null || s === undefined) {
    return '—';
  }
  if (s < 1) {
    return `${(s * 1000).toFixed(0)} ms`;
  }
  if (s < 60) {
    return `${s.toFixed(1)} s`;
  }
  return age(s);
}

export function age(s: number): string {
  s = Math.max(0, s);
  for (const [unit, n] of [['d', 86400], ['h', 3600], ['min', 60]] as [string, number][]) {
    if (s >= n) {
      return `${Math.round(s / n)} ${unit}`;
    }
  }
  return `${Math.round(s)} s`;
}

export function when(epoch: number): string {
  return new Date(epoch * 1000).toLocaleString();
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
