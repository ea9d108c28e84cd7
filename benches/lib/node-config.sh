# The benchmarked node's configuration, shared by benches/http.sh and benches/instructions.sh:
# one machine client, one web client, one static user. Needs GATEHOUSE (the binary), BASE
# and PORT; sets the credentials the load generators use.
# shellcheck shell=bash

PASSWORD="correct horse battery staple"
USERNAME="ada@bench.test"
CC_SECRET="bench-client-secret-0123456789abcdefghij"
WEB_SECRET="web-client-secret-0123456789abcdefghijkl"
REDIRECT="http://app.bench.test/cb"
PW_HASH=$(printf '%s\n' "$PASSWORD" | "$GATEHOUSE" hash-password)

write_config() { # alg dir
    cat >"$2/gatehouse.toml" <<EOF
issuer = "$BASE"
listen = "127.0.0.1:$PORT"
data_dir = "$2/data"

[log]
format = "json"

[keys]
algorithm = "$1"

[[apis]]
audience = "https://api.bench.test"
scopes = ["read:things", "write:things"]

[[clients]]
client_id = "bench"
name = "Bench machine client"
client_secret = "$CC_SECRET"
token_endpoint_auth_method = "client_secret_post"
grant_types = ["client_credentials"]
apis = ["https://api.bench.test"]

[[clients]]
client_id = "web"
name = "Bench web app"
client_secret = "$WEB_SECRET"
redirect_uris = ["$REDIRECT"]
connections = ["users"]

[[connections]]
id = "users"
type = "static"
display_name = "Bench users"
[[connections.options.users]]
username = "$USERNAME"
id = "ada"
email = "$USERNAME"
name = "Ada Lovelace"
given_name = "Ada"
family_name = "Lovelace"
password_hash = "$PW_HASH"
EOF
}
