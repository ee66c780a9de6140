/** Text made safe inside HTML, attribute values too: `& < > " '` as numeric character references. */
export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
