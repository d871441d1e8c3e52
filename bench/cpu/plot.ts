/** A grouped bar chart as SVG: one group per case, one bar per variant, the value printed on each bar. */

export interface BarGroup {
  label: string;
  bars: { series: string; value: number }[];
}

const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#b07aa1'];

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function barChartSvg(title: string, yLabel: string, groups: BarGroup[]): string {
  const series = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.series)))];
  const max = Math.max(...groups.flatMap((g) => g.bars.map((b) => b.value)), 1e-9);
  const barW = 28;
  const gap = 36;
  const groupW = series.length * barW + gap;
  const left = 70;
  const top = 50;
  const plotH = 300;
  const width = left + groups.length * groupW + 20;
  const height = top + plotH + 60 + series.length * 18;
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="14">${escape(title)}</text>`,
    `<text x="16" y="${top + plotH / 2}" transform="rotate(-90 16 ${top + plotH / 2})" text-anchor="middle">${escape(yLabel)}</text>`,
    `<line x1="${left}" y1="${top + plotH}" x2="${width - 10}" y2="${top + plotH}" stroke="#333"/>`,
  ];
  for (let t = 0; t <= 4; t++) {
    const v = (max * t) / 4;
    out.push(`<line x1="${left}" y1="${y(v)}" x2="${width - 10}" y2="${y(v)}" stroke="#ddd"/>`, `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`);
  }
  groups.forEach((g, gi) => {
    const x0 = left + gap / 2 + gi * groupW;
    for (const b of g.bars) {
      const si = series.indexOf(b.series);
      const x = x0 + si * barW;
      out.push(
        `<rect x="${x}" y="${y(b.value)}" width="${barW - 4}" height="${top + plotH - y(b.value)}" fill="${COLORS[si % COLORS.length]}"/>`,
        `<text x="${x + (barW - 4) / 2}" y="${y(b.value) - 4}" text-anchor="middle" font-size="9">${b.value.toFixed(0)}</text>`,
      );
    }
    out.push(`<text x="${x0 + (series.length * barW) / 2}" y="${top + plotH + 16}" text-anchor="middle">${escape(g.label)}</text>`);
  });
  series.forEach((s, si) => {
    const ly = top + plotH + 40 + si * 18;
    out.push(`<rect x="${left}" y="${ly - 10}" width="12" height="12" fill="${COLORS[si % COLORS.length]}"/>`, `<text x="${left + 18}" y="${ly}">${escape(s)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
