# Helpers shared by scripts/test and scripts/demo: install (from Debian / crates.io) and start what is missing.

S3S_VERSION=0.14.1
S3_ACCESS_KEY=reverie
S3_SECRET_KEY=reverie-secret

step() { printf '\n== %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() { # port seconds name
  local i
  for ((i = 0; i < $2 * 4; i++)); do
    port_open "$1" && return 0
    sleep 0.25
  done
  echo "error: $3 did not start listening on 127.0.0.1:$1 within $2 s" >&2
  return 1
}

apt_install() {
  command -v apt-get >/dev/null || { echo "error: $* missing and apt-get unavailable" >&2; return 1; }
  [ -n "${REVERIE_APT_UPDATED:-}" ] || { apt-get update -qq; export REVERIE_APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    echo "error: cargo is not installed; install Rust 1.95 (rustup) first" >&2
    exit 1
  fi
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  step "starting RabbitMQ"
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  rabbitmq-server -detached
  wait_for_port 5672 90 RabbitMQ
  # The broker accepts TCP a moment before AMQP sessions; give it that moment.
  command -v rabbitmqctl >/dev/null && rabbitmqctl await_startup >/dev/null 2>&1 || sleep 3
}

ensure_redis() {
  port_open 6379 && return 0
  step "starting Redis"
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for_port 6379 30 Redis
}

# s3s-fs: a real S3 protocol server (the s3s crate's reference file-system backend). Chosen over Garage
# (9 min to build) and moto (Python mock) for install time and protocol fidelity: see docs/testing.md.
ensure_s3_server_binary() {
  if cargo install --list 2>/dev/null | grep -q "^s3s-fs v$S3S_VERSION"; then
    return 0
  fi
  step "installing s3s-fs $S3S_VERSION (about 2 minutes, once)"
  cargo install --locked "s3s-fs@$S3S_VERSION" --features binary
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_s3_server() { # data dir
  ensure_s3_server_binary
  local dir=$1 port
  rm -rf "$dir" && mkdir -p "$dir"
  port=$(free_port)
  s3s-fs --host 127.0.0.1 --port "$port" --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$dir" \
    >"$dir.log" 2>&1 &
  S3_SERVER_PID=$!
  wait_for_port "$port" 30 s3s-fs
  export REVERIE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export REVERIE_TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY REVERIE_TEST_S3_SECRET_KEY=$S3_SECRET_KEY
  echo "S3-compatible server (s3s-fs) on $REVERIE_TEST_S3_ENDPOINT"
}

stop_s3_server() {
  [ -n "${S3_SERVER_PID:-}" ] && kill "$S3_SERVER_PID" 2>/dev/null || true
}

# libheif (Debian's libheif-dev) for HEIC photos: reverie-library's `heic` feature links it. Fails (and
# the caller builds without the feature) where it cannot be installed.
# Asked through pkg-config, as libheif-rs's build does: Debian puts the headers under a multiarch folder.
libheif_present() {
  command -v pkg-config >/dev/null && pkg-config --exists 'libheif >= 1.14'
}

ensure_libheif() {
  libheif_present && return 0
  step "installing libheif-dev for HEIC photos"
  apt_install libheif-dev pkg-config || return 1
  libheif_present
}

# The Python example client (docs/examples) runs in the tests: it needs pika.
ensure_python_client() {
  python3 -c 'import pika' 2>/dev/null && return 0
  step "installing pika for the Python example client"
  python3 -m pip install --quiet "pika>=1.3,<2"
}

# The web app's browser test: Debian's chromium and its driver, and selenium from PyPI to drive them.
ensure_browser() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    step "installing chromium and chromium-driver for the web app's browser test"
    apt_install chromium chromium-driver
  fi
  python3 -c 'import selenium' 2>/dev/null && return 0
  step "installing selenium for the web app's browser test"
  python3 -m pip install --quiet "selenium>=4.20,<5"
}

# `reverie models fetch` gets the person segmentation model with `npm pack` (@mediapipe/selfie_segmentation).
ensure_npm() {
  command -v npm >/dev/null && return 0
  step "installing npm for the segmentation model download"
  apt_install npm
}

# nvcc, the CUDA headers and the static CUDA runtime from PyPI's CUDA 13.0 wheels, laid out as a toolkit
# under .tools/ (about 270 MB, once), for the cuda feature: candle-kernels compiles its kernels with nvcc
# even under `cargo check`. Exports CUDA_ROOT/CUDA_PATH/CUDA_HOME, PATH, CUDA_COMPUTE_CAP (90: H100/H200)
# and LIBRARY_PATH. Fails with a clear error where the wheels cannot be installed: never skips.
# Used by scripts/test (the CI cuda check) and scripts/gpu/build-cuda.
CUDA_NVCC_VERSION=13.0.88
CUDA_CCCL_VERSION=13.0.85
ensure_nvcc() {
  local root tools pkg lib base
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  tools=$root/.tools/cuda-$CUDA_NVCC_VERSION
  if [ ! -x "$tools/bin/nvcc" ] || [ ! -f "$tools/lib64/libcudart_static.a" ]; then
    step "installing nvcc $CUDA_NVCC_VERSION and the CUDA headers from PyPI into .tools/ (once)"
    rm -rf "$tools"
    python3 -m pip install --quiet --disable-pip-version-check --target "$tools/py" \
      "nvidia-cuda-nvcc==$CUDA_NVCC_VERSION" "nvidia-cuda-runtime==$CUDA_NVCC_VERSION" \
      "nvidia-cuda-cccl==$CUDA_CCCL_VERSION" "nvidia-cuda-crt==$CUDA_NVCC_VERSION" \
      "nvidia-nvvm==$CUDA_NVCC_VERSION" || {
      echo "error: cannot install the CUDA $CUDA_NVCC_VERSION wheels from PyPI (network? pip?): the cuda feature cannot be checked" >&2
      return 1
    }
    # Lay the wheels out as a CUDA toolkit root: bin/, include/, lib64/, nvvm/.
    mkdir -p "$tools/bin" "$tools/include" "$tools/lib64"
    for pkg in "$tools"/py/nvidia/*/; do
      [ -d "$pkg/bin" ] && cp -rs "$pkg"/bin/. "$tools/bin/" 2>/dev/null
      [ -d "$pkg/include" ] && cp -rs "$pkg"/include/. "$tools/include/" 2>/dev/null
      [ -d "$pkg/lib" ] && cp -rs "$pkg"/lib/. "$tools/lib64/" 2>/dev/null
      [ -d "$pkg/nvvm" ] && { mkdir -p "$tools/nvvm"; cp -rs "$pkg"/nvvm/. "$tools/nvvm/" 2>/dev/null; }
    done
    # The wheels ship versioned sonames only; the linker wants the plain names.
    for lib in "$tools"/lib64/lib*.so.*; do
      base=${lib%%.so.*}.so
      [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
    done
    if [ ! -x "$tools/bin/nvcc" ] || [ ! -f "$tools/lib64/libcudart_static.a" ]; then
      echo "error: the CUDA $CUDA_NVCC_VERSION wheels did not provide bin/nvcc and libcudart_static.a" >&2
      return 1
    fi
  fi
  # candle-kernels asks for -lcudart: a folder holding only the static runtime under that name links it
  # into the binary, so that needs no libcudart.so.13 where it runs (vendor/README.md).
  mkdir -p "$tools/link"
  ln -sf "$tools/lib64/libcudart_static.a" "$tools/link/libcudart.a"
  export CUDA_ROOT=$tools CUDA_PATH=$tools CUDA_HOME=$tools
  export PATH=$tools/bin:$PATH
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
  export LIBRARY_PATH=$tools/link${LIBRARY_PATH:+:$LIBRARY_PATH}
}
