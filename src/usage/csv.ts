// CSV as RFC 4180 has it: a header line, CRLF line ends, and a field quoted (its quotes doubled)
// only when it holds a comma, a quote or a line break. Absent values are empty fields.

function field (value: unknown): string {
  if (value === null || value === undefined) return ''
  const text = String(value)
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

/** The rows as CSV, one column per name in `columns`, in that order. */
export function toCsv<Row extends object> (columns: ReadonlyArray<keyof Row & string>, rows: readonly Row[]): string {
  const lines = [columns.map(field).join(',')]
  for (const row of rows) lines.push(columns.map((c) => field(row[c])).join(','))
  return `${lines.join('\r\n')}\r\n`
}
