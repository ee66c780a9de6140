#!/bin/sh
# The Debian packages the tests run against: Pebble (Let's Encrypt's ACME test CA, with
# pebble-challtestsrv), redis-server (the tests start their own, on unix sockets), openssl,
# chromium (the login gate's browser tests drive it with playwright-core; never a downloaded one),
# curl and Debian's Python 3 with requests, httpx and aiohttp (the HTTP stacks of the Python
# clients that the header-less-client tests call ChatGate with).
# `npm test` runs this first: it installs what is missing when it can (root with apt-get, as in
# CI and containers) and otherwise says what to install.
PACKAGES="pebble redis-server openssl chromium curl python3 python3-requests python3-httpx python3-aiohttp"
missing=""
for bin in pebble pebble-challtestsrv redis-server openssl chromium curl; do
  command -v "$bin" >/dev/null 2>&1 || missing="$missing $bin"
done
/usr/bin/python3 -c 'import requests, httpx, aiohttp' >/dev/null 2>&1 || missing="$missing python3-requests/httpx/aiohttp"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing the Debian packages the tests need (missing:$missing)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  { apt-get update -q && apt-get install -y -q --no-install-recommends $PACKAGES; } </dev/null >&2 && exit 0
fi
echo "the tests need Debian packages $PACKAGES (missing:$missing): sudo apt-get install -y $PACKAGES" >&2
exit 1
