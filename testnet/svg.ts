/**
 * Two plots as hand-written SVG (no plotting dependency): grouped bars (mean TTFT and TTLT per
 * strategy, with p95 whiskers) and empirical CDFs of TTFT per strategy (log x axis when the values
 * span more than a decade).
 */

const COLORS: Record<string, string> = { none: '#7f7f7f', local: '#4c78a8', broadcast: '#f58518', catalog: '#54a24b' }
const EXTRA = ['#b279a2', '#e45756', '#72b7b2', '#eeca3b']
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"'

export function colorOf (name: string, i: number): string {
  return COLORS[name] ?? EXTRA[i % EXTRA.length] as string
}

function esc (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

function fmt (v: number): string {
  if (!Number.isFinite(v)) return '–'
  if (v === 0) return '0'
  const a = Math.abs(v)
  if (a >= 100) return v.toFixed(0)
  if (a >= 10) return v.toFixed(1)
  if (a >= 1) return v.toFixed(2)
  if (a >= 0.01) return v.toFixed(3)
  return v.toExponential(1)
}

/** A tick label: as few digits as the value needs. */
function tick (v: number): string {
  return Number(v.toPrecision(3)).toString()
}

/** About `count` round tick values from 0 to at least `max`. */
export function niceTicks (max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1]
  const raw = max / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = ([1, 2, 2.5, 5, 10].find(m => m * mag >= raw) ?? 10) * mag
  const ticks: number[] = []
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)))
  return ticks
}

function header (width: number, height: number, title: string, subtitle?: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">${esc(title)}</text>`,
    ...(subtitle != null ? [`<text x="${width / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">${esc(subtitle)}</text>`] : [])
  ]
}

export interface BarGroup {
  label: string
  bars: Array<{ series: string, value: number, whisker?: number }>
}

/** Grouped vertical bars; `series` names the bars inside each group (e.g. TTFT, TTLT). */
export function barChart (options: { title: string, subtitle?: string, unit: string, groups: BarGroup[], series: string[] }): string {
  const { groups, series } = options
  const width = Math.max(520, 120 + groups.length * (series.length * 46 + 40))
  const height = 380
  const m = { left: 70, right: 20, top: 60, bottom: 70 }
  const plotW = width - m.left - m.right
  const plotH = height - m.top - m.bottom
  const max = Math.max(...groups.flatMap(g => g.bars.map(b => Math.max(b.value, b.whisker ?? 0))).filter(Number.isFinite), 0)
  const ticks = niceTicks(max)
  const top = ticks[ticks.length - 1] as number
  const y = (v: number): number => m.top + plotH - (v / top) * plotH
  const out = header(width, height, options.title, options.subtitle)
  for (const t of ticks) {
    out.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${m.left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end" fill="#333">${tick(t)}</text>`)
  }
  out.push(`<text transform="translate(16 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#333">${esc(options.unit)}</text>`)
  const groupW = plotW / Math.max(1, groups.length)
  const barW = Math.min(46, (groupW - 30) / Math.max(1, series.length))
  groups.forEach((g, gi) => {
    const x0 = m.left + gi * groupW + (groupW - barW * series.length) / 2
    g.bars.forEach(b => {
      const si = Math.max(0, series.indexOf(b.series))
      const x = x0 + si * barW
      const v = Number.isFinite(b.value) ? b.value : 0
      const color = colorOf(g.label, gi)
      out.push(`<rect x="${(x + 2).toFixed(1)}" y="${y(v).toFixed(1)}" width="${(barW - 4).toFixed(1)}" height="${(y(0) - y(v)).toFixed(1)}" fill="${color}" fill-opacity="${si === 0 ? 1 : 0.45}" stroke="${color}"><title>${esc(`${g.label} ${b.series}: ${fmt(b.value)} ${options.unit}`)}</title></rect>`)
      const hasWhisker = b.whisker != null && Number.isFinite(b.whisker) && b.whisker > v
      const labelY = y(hasWhisker ? b.whisker as number : v) - 5
      out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${labelY.toFixed(1)}" text-anchor="middle" font-size="10" fill="#222">${fmt(b.value)}</text>`)
      if (hasWhisker && b.whisker != null) {
        const cx = x + barW / 2
        out.push(`<line x1="${cx.toFixed(1)}" x2="${cx.toFixed(1)}" y1="${y(v).toFixed(1)}" y2="${y(b.whisker).toFixed(1)}" stroke="#222" stroke-dasharray="2 2"/>`)
        out.push(`<line x1="${(cx - 5).toFixed(1)}" x2="${(cx + 5).toFixed(1)}" y1="${y(b.whisker).toFixed(1)}" y2="${y(b.whisker).toFixed(1)}" stroke="#222"/>`)
      }
    })
    out.push(`<text x="${(m.left + gi * groupW + groupW / 2).toFixed(1)}" y="${height - m.bottom + 18}" text-anchor="middle" font-weight="600">${esc(g.label)}</text>`)
  })
  out.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`)
  // legend: series shading
  series.forEach((s, si) => {
    const lx = m.left + si * 240
    out.push(`<rect x="${lx}" y="${height - 30}" width="14" height="14" fill="#555" fill-opacity="${si === 0 ? 1 : 0.45}" stroke="#555"/>`)
    out.push(`<text x="${lx + 20}" y="${height - 19}">${esc(s)} (mean; dashed: p95)</text>`)
  })
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

/** Empirical CDFs as step lines; values in `unit`. */
export function cdfChart (options: { title: string, subtitle?: string, unit: string, series: Array<{ label: string, values: number[] }> }): string {
  const width = 640
  const height = 400
  const m = { left: 60, right: 150, top: 60, bottom: 50 }
  const plotW = width - m.left - m.right
  const plotH = height - m.top - m.bottom
  const all = options.series.flatMap(s => s.values).filter(v => Number.isFinite(v) && v > 0)
  const out = header(width, height, options.title, options.subtitle)
  if (all.length === 0) {
    out.push(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle">no data</text>`, '</svg>')
    return `${out.join('\n')}\n`
  }
  const lo = Math.min(...all)
  const hi = Math.max(...all)
  const log = hi / lo > 10
  let x: (v: number) => number
  let ticks: number[]
  if (log) {
    // 1-2-5 steps, from the one at or below the smallest value to the one at or above the largest
    const steps: number[] = []
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) for (const k of [1, 2, 5]) steps.push(Number((k * 10 ** e).toPrecision(3)))
    const from = steps.filter(v => v <= lo).pop() ?? steps[0] as number
    const to = steps.find(v => v >= hi) ?? steps[steps.length - 1] as number
    const a = Math.log10(from)
    const span = Math.max(1e-9, Math.log10(to) - a)
    x = v => m.left + ((Math.log10(Math.min(Math.max(v, from), to)) - a) / span) * plotW
    ticks = steps.filter(v => v >= from && v <= to)
  } else {
    ticks = niceTicks(hi)
    const top = ticks[ticks.length - 1] as number
    x = v => m.left + (v / top) * plotW
  }
  const y = (p: number): number => m.top + plotH - p * plotH
  for (const t of ticks) {
    out.push(`<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${m.top}" y2="${m.top + plotH}" stroke="#e0e0e0"/>`)
    out.push(`<text x="${x(t).toFixed(1)}" y="${m.top + plotH + 16}" text-anchor="middle" fill="#333">${tick(t)}</text>`)
  }
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    out.push(`<line x1="${m.left}" x2="${m.left + plotW}" y1="${y(p).toFixed(1)}" y2="${y(p).toFixed(1)}" stroke="#e0e0e0"/>`)
    out.push(`<text x="${m.left - 6}" y="${(y(p) + 4).toFixed(1)}" text-anchor="end" fill="#333">${p.toFixed(2)}</text>`)
  }
  out.push(`<text x="${m.left + plotW / 2}" y="${height - 12}" text-anchor="middle" fill="#333">${esc(options.unit)}${log ? ' (log scale)' : ''}</text>`)
  out.push(`<text transform="translate(16 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#333">fraction of queries</text>`)
  options.series.forEach((s, i) => {
    const v = s.values.filter(Number.isFinite).sort((a, b) => a - b)
    if (v.length === 0) return
    const pts: string[] = [`${x(v[0] as number).toFixed(1)},${y(0).toFixed(1)}`]
    v.forEach((val, k) => {
      pts.push(`${x(val).toFixed(1)},${y(k / v.length).toFixed(1)}`)
      pts.push(`${x(val).toFixed(1)},${y((k + 1) / v.length).toFixed(1)}`)
    })
    const color = colorOf(s.label, i)
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(' ')}"><title>${esc(s.label)}</title></polyline>`)
    out.push(`<line x1="${width - m.right + 14}" x2="${width - m.right + 34}" y1="${m.top + 10 + i * 20}" y2="${m.top + 10 + i * 20}" stroke="${color}" stroke-width="3"/>`)
    out.push(`<text x="${width - m.right + 40}" y="${m.top + 14 + i * 20}">${esc(s.label)}</text>`)
  })
  out.push(`<rect x="${m.left}" y="${m.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`)
  out.push('</svg>')
  return `${out.join('\n')}\n`
}
