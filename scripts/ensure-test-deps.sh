#!/bin/sh
# The Debian packages the tests run against: Pebble (Let's Encrypt's ACME test CA, with
# pebble-challtestsrv), redis-server (the tests start their own, on unix sockets) and openssl.
# `npm test` runs this first: it installs what is missing when it can (root with apt-get, as in
# CI and containers) and otherwise says what to install.
missing=""
for bin in pebble pebble-challtestsrv redis-server openssl; do
  command -v "$bin" >/dev/null 2>&1 || missing="$missing $bin"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing the Debian packages the tests need (missing:$missing)" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends pebble redis-server openssl; } </dev/null >&2 && exit 0
fi
echo "the tests need Debian packages pebble, redis-server and openssl (missing:$missing): sudo apt-get install -y pebble redis-server openssl" >&2
exit 1
