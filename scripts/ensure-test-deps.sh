#!/bin/sh
# The Debian packages the tests run against: Pebble (Let's Encrypt's ACME test CA, with
# pebble-challtestsrv), redis-server (the tests start their own, on unix sockets), openssl and
# chromium (the login gate's browser tests drive it with playwright-core; never a downloaded one).
# `npm test` runs this first: it installs what is missing when it can (root with apt-get, as in
# CI and containers) and otherwise says what to install.
missing=""
for bin in pebble pebble-challtestsrv redis-server openssl chromium; do
  command -v "$bin" >/dev/null 2>&1 || missing="$missing $bin"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing the Debian packages the tests need (missing:$missing)" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends pebble redis-server openssl chromium; } </dev/null >&2 && exit 0
fi
echo "the tests need Debian packages pebble, redis-server, openssl and chromium (missing:$missing): sudo apt-get install -y pebble redis-server openssl chromium" >&2
exit 1
