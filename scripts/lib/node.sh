# Sourced by scripts/setup (and by the test of this logic in tests/setup_script.rs).
# The npm test peers need Node.js >= 20 (openid-client 6); Debian 12's `nodejs` is 18. When
# the Node on PATH is older or missing, install the npm registry's `node` package (it ships
# the binary; no other host is contacted) into tests/peers/.node, which the tests prefer.

NODE_MIN_MAJOR=20
NODE_PREFIX="tests/peers/.node"
NODE_LOCAL_BIN="$NODE_PREFIX/node_modules/.bin"

# The major version of the Node binary $1, or nothing when it is missing or says no version.
node_major() {
  "$1" --version 2>/dev/null | sed -n 's/^v\([0-9][0-9]*\)\..*/\1/p'
}

# Whether the Node binary $1 is recent enough.
node_ok() {
  local major
  major="$(node_major "$1")"
  [ -n "$major" ] && [ "$major" -ge "$NODE_MIN_MAJOR" ]
}

# Make a Node >= NODE_MIN_MAJOR available: the system's when recent enough, else the local one,
# installed with npm when absent. Prints the directory to put first on PATH ("" for the system's).
ensure_node() {
  if node_ok node; then
    echo ""
    return 0
  fi
  if ! node_ok "$NODE_LOCAL_BIN/node"; then
    echo "setup: Node.js $(node --version 2>/dev/null || echo "is missing"), older than $NODE_MIN_MAJOR: installing the npm registry's node@$NODE_MIN_MAJOR into $NODE_PREFIX" >&2
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error "node@$NODE_MIN_MAJOR" >&2 || {
      echo "setup: npm could not install node@$NODE_MIN_MAJOR" >&2
      return 1
    }
    if ! node_ok "$NODE_LOCAL_BIN/node"; then
      echo "setup: $NODE_LOCAL_BIN/node is not a Node.js >= $NODE_MIN_MAJOR after the install" >&2
      return 1
    fi
  fi
  echo "$(cd "$NODE_LOCAL_BIN" && pwd)"
}
