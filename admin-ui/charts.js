// Two small SVG charts, drawn here without a library: bars (requests per minute) and a line
// (mean time to first token per minute). Each bar and point carries its value in data-value, and
// a <title> that the browser shows on hover.

import { format, svg } from './dom.js'

const WIDTH = 600
const HEIGHT = 170
const MARGIN = { top: 22, right: 10, bottom: 24, left: 48 }
const PLOT_W = WIDTH - MARGIN.left - MARGIN.right
const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom

/** A round upper bound for the y axis: 1, 2, 5, 10, 20, 50 … at least the largest value. */
function niceMax (value) {
  if (!(value > 0)) return 1
  const power = 10 ** Math.floor(Math.log10(value))
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power
  return 10 * power
}

/** Frame, horizontal grid lines with their values, and times along the bottom. */
function axes (chart, points, max, unit) {
  const y = (v) => MARGIN.top + PLOT_H - (v / max) * PLOT_H
  for (const v of [0, max / 2, max]) {
    chart.append(svg('line', { class: 'grid', x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(v), y2: y(v) }))
    const label = Number.isInteger(v) ? format.number(v) : v.toFixed(1)
    chart.append(svg('text', { class: 'axis-label', x: MARGIN.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, label))
  }
  chart.append(svg('text', { class: 'axis-unit', x: 4, y: 12 }, unit))
  const step = PLOT_W / points.length
  const ticks = [0, Math.floor(points.length / 2), points.length - 1]
  for (const i of ticks) {
    const anchor = i === 0 ? 'start' : i === points.length - 1 ? 'end' : 'middle'
    const x = MARGIN.left + step * (i + (anchor === 'start' ? 0 : anchor === 'end' ? 1 : 0.5))
    chart.append(svg('text', { class: 'axis-label', x, y: HEIGHT - 6, 'text-anchor': anchor }, format.clock(points[i].at)))
  }
  chart.append(svg('line', { class: 'axis', x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(0), y2: y(0) }))
  return y
}

function frame (testid, title) {
  return svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', role: 'img', 'aria-label': title, 'data-testid': testid })
}

/** Bars of `points` ({ at: Date, value: number }), one per point, oldest on the left. */
export function barChart (points, { testid, title, unit, describe }) {
  const chart = frame(testid, title)
  if (points.length === 0) return chart
  const max = niceMax(Math.max(...points.map((p) => p.value)))
  const y = axes(chart, points, max, unit)
  const step = PLOT_W / points.length
  points.forEach((p, i) => {
    const top = y(p.value)
    chart.append(svg('rect', {
      class: 'bar-mark',
      x: MARGIN.left + step * i + step * 0.1,
      y: top,
      width: step * 0.8,
      height: MARGIN.top + PLOT_H - top,
      'data-value': p.value,
      'data-at': p.at.toISOString(),
    }, svg('title', {}, describe(p))))
  })
  return chart
}

/** A line through the points that have a value; gaps where they have none (null). */
export function lineChart (points, { testid, title, unit, describe }) {
  const chart = frame(testid, title)
  if (points.length === 0) return chart
  const values = points.filter((p) => p.value !== null).map((p) => p.value)
  const max = niceMax(values.length === 0 ? 0 : Math.max(...values))
  const y = axes(chart, points, max, unit)
  const step = PLOT_W / points.length
  const x = (i) => MARGIN.left + step * (i + 0.5)
  let path = ''
  let drawing = false
  points.forEach((p, i) => {
    if (p.value === null) {
      drawing = false
      return
    }
    path += `${drawing ? 'L' : 'M'}${x(i).toFixed(1)},${y(p.value).toFixed(1)} `
    drawing = true
  })
  if (path !== '') chart.append(svg('path', { class: 'line-mark', d: path.trim() }))
  points.forEach((p, i) => {
    if (p.value === null) return
    chart.append(svg('circle', { class: 'point-mark', cx: x(i), cy: y(p.value), r: 3, 'data-value': p.value, 'data-at': p.at.toISOString() },
      svg('title', {}, describe(p))))
  })
  return chart
}
