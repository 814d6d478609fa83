# A static `kubetask` binary on a distroless, non-root base.
#   docker build -t ghcr.io/kubetask/kubetask:v0.1.0 .
# The wasm plugins are committed (plugins/**/*.wasm), so no wasm toolchain is needed here.
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin kubetask \
    && cp target/x86_64-unknown-linux-musl/release/kubetask /kubetask

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /kubetask /kubetask
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/kubetask"]
CMD ["controller"]
