// CSV as RFC 4180 has it: a header line, CRLF line ends, and a field quoted (its quotes doubled)
// only when it holds a comma, a quote or a line break. Absent values are empty fields.

// Text that begins like a formula (= + - @, or a tab or carriage return) is run as one by the
// spreadsheet an admin opens the file in, and names in it are not all the admin's own (users
// from an identity provider, models from backends): such a field gets a leading apostrophe,
// which spreadsheets show as plain text. Numbers (negative ones too) stay as they are.
const FORMULA_START = /^[=+\-@\t\r]/

function field (value: unknown): string {
  if (value === null || value === undefined) return ''
  let text = String(value)
  if (typeof value === 'string' && FORMULA_START.test(text)) text = `'${text}`
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

/** The rows as CSV, one column per name in `columns`, in that order. */
export function toCsv<Row extends object> (columns: ReadonlyArray<keyof Row & string>, rows: readonly Row[]): string {
  const lines = [columns.map(field).join(',')]
  for (const row of rows) lines.push(columns.map((c) => field(row[c])).join(','))
  return `${lines.join('\r\n')}\r\n`
}
