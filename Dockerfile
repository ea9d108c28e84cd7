# Gatehouse container image: build with the Rust toolchain, run on a slim Debian.
FROM rust:1.95-bookworm AS build
# The SAML connector builds against libxmlsec1/libxml2 (bindgen needs libclang).
RUN apt-get update && apt-get install -y --no-install-recommends \
        pkg-config libclang-dev libxmlsec1-dev libxml2-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gatehouse

FROM debian:bookworm-slim
# Runtime libraries of the SAML connector (xmlsec with its OpenSSL backend, libxml2).
RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates libxmlsec1 libxmlsec1-openssl libxml2 libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/gatehouse --create-home gatehouse
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
USER gatehouse
WORKDIR /var/lib/gatehouse
EXPOSE 8080
ENTRYPOINT ["gatehouse"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
