#!/usr/bin/env bash
# Prove the runtime on arm64 without a Raspberry Pi: an arm64 Debian Python 3.11 and the
# aarch64 wheels of the runtime run under qemu user-mode emulation of a Pi 4's CPU
# (Cortex-A72). Nothing is installed into the host system: the arm64 packages, and Debian
# trixie's qemu-user (used whatever qemu the host has), are fetched with `apt-get download`
# into their own folder and unpacked with `dpkg -x`.
#
#   make arm64-smoke                        # or: bash scripts/arm64-smoke.sh
#   SAMPLES=500 PHOTOS_PER_CLASS=10 bash scripts/arm64-smoke.sh
#
# First, under a Raspberry Pi's /sys/class/drm (graphics cards whose device has no `vendor`
# file, mounted in a private mount namespace with `unshare -m`; needs root), `edgefmnist infer
# --image` must print its result on stdout and nothing at all on stderr (onnxruntime 1.23-1.27
# print two device-discovery warnings there at import). Then it asserts, for the shipped fp32
# and int8 models of both networks: `edgefmnist infer` on
# SAMPLES test images gives the same labels on arm64 as on this machine for fp32 (and
# probabilities within 1e-4) and agrees on >= 99.5 % for int8; `edgefmnist evaluate`
# under emulation gives the accuracy the model's metadata records. Then the photo path
# (picture loading, OpenCV's GrabCut, the default model): `edgefmnist infer --image` on the
# first PHOTOS_PER_CLASS photos (sorted by name) of each source class of tests/data/photos
# gives the same label on arm64 as here for >= 95 % of them (GrabCut's k-means and float
# math may differ slightly across architectures; the count of identical labels is printed).
set -euo pipefail
cd "$(dirname "$0")/.."

# The onnxruntime the README recommends for a Pi. 1.28 and later crash at import under Debian
# bookworm's qemu 7.2 but run under trixie's qemu 10, which this script therefore uses; 1.23-1.27
# print GPU device-discovery warnings at import on a Pi, 1.31.1 does not.
ORT_VERSION=${ORT_VERSION:-1.31.1}
QEMU_SUITE=trixie   # Debian release whose qemu-user (static, >= 10) emulates the CPU
SAMPLES=${SAMPLES:-300}
PHOTOS_PER_CLASS=${PHOTOS_PER_CLASS:-4}   # 10 source classes: 40 photos
PHOTOS_DIR=tests/data/photos
PYTHON=${PYTHON:-.venv/bin/python}
if [ -n "${EDGEFMNIST_ARM64_DIR:-}" ]; then
    WORK=$EDGEFMNIST_ARM64_DIR
else
    case ${XDG_CACHE_HOME:-} in   # a relative one is ignored (XDG spec)
        /*) WORK=$XDG_CACHE_HOME/edgefmnist/arm64 ;;
        *) WORK=$HOME/.cache/edgefmnist/arm64 ;;
    esac
fi
ROOT=$WORK/root        # the unpacked arm64 packages
SITE=$WORK/site        # the aarch64 wheels of the dependencies, installed with --target
                       # (and $WORK/project: this checkout's own wheel, rebuilt every run)
OUT=$WORK/results
read -r -a MODELS <<< "$("$PYTHON" -m edgefmnist.contract --onnx)"   # the shipped ONNX models

say() { echo "arm64-smoke: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/archives/partial" "$WORK/debs" "$WORK/wheels" "$OUT"

host_arch=$(dpkg --print-architecture)
apt_opts=(-o "APT::Architecture=arm64" -o "APT::Architectures::=arm64" -o "APT::Architectures::=$host_arch"
          -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache::archives=$WORK/apt/archives"
          -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "Debug::NoLocking=1"
          -o "APT::Sandbox::User=$(id -un)")

if [ ! -x "$ROOT/usr/bin/python3.11" ]; then
    say "fetching arm64 Debian packages of Python 3.11 into $WORK"
    apt-get "${apt_opts[@]}" update -qq
    packages=$(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
               --no-breaks --no-replaces --no-enhances python3.11 libstdc++6 | grep -E '^[a-z0-9]' | grep -v ':' | sort -u)
    (cd "$WORK/debs" && apt-get "${apt_opts[@]}" download $packages >/dev/null)
    rm -rf "$ROOT.partial" && mkdir -p "$ROOT.partial"
    for deb in "$WORK"/debs/*_arm64.deb "$WORK"/debs/*_all.deb; do dpkg -x "$deb" "$ROOT.partial"; done
    mv "$ROOT.partial" "$ROOT"
fi

QEMU=$WORK/qemu-$QEMU_SUITE/usr/bin/qemu-aarch64   # statically linked: runs on any x86-64 Linux
if [ ! -x "$QEMU" ]; then
    say "fetching Debian $QEMU_SUITE's qemu-user ($host_arch) into $WORK/qemu-$QEMU_SUITE"
    suite=$WORK/apt-$QEMU_SUITE
    mkdir -p "$suite/lists/partial" "$suite/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $QEMU_SUITE main" \
        > "$suite/sources.list"
    suite_opts=(-o "Dir::Etc::sourcelist=$suite/sources.list" -o "Dir::Etc::sourceparts=-"
                -o "Dir::State::Lists=$suite/lists" -o "Dir::Cache::archives=$suite/archives"
                -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "Debug::NoLocking=1"
                -o "APT::Architecture=$host_arch" -o "APT::Sandbox::User=$(id -un)")
    apt-get "${suite_opts[@]}" update -qq
    (cd "$suite" && rm -f qemu-user_*.deb && apt-get "${suite_opts[@]}" download "qemu-user:$host_arch" >/dev/null)
    rm -rf "$WORK/qemu-$QEMU_SUITE.partial"
    dpkg -x "$suite"/qemu-user_*_"$host_arch".deb "$WORK/qemu-$QEMU_SUITE.partial"
    rm -rf "$WORK/qemu-$QEMU_SUITE" && mv "$WORK/qemu-$QEMU_SUITE.partial" "$WORK/qemu-$QEMU_SUITE"
fi

platform=(--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64
          --python-version 3.11 --implementation cp --only-binary=:all:)
say "building edgefmnist's wheel; fetching the aarch64 wheels it needs (onnxruntime $ORT_VERSION)"
rm -rf "$WORK/project" "$WORK"/wheels/edgefmnist-*.whl
"$PYTHON" -m pip wheel --quiet --no-deps -w "$WORK/wheels" .
project=$(ls "$WORK"/wheels/edgefmnist-*.whl)
dependencies=$( (cat pyproject.toml; echo "$ORT_VERSION") | sha256sum | cut -c1-16)   # wheels kept until these change
if [ "$(cat "$SITE/.complete" 2>/dev/null)" != "$dependencies" ]; then
    # a folder of its own per dependency set: wheels of another onnxruntime pin never mix in
    deps_wheels="$WORK/wheels/deps-$dependencies"
    rm -rf "$deps_wheels" && mkdir -p "$deps_wheels"
    "$PYTHON" -m pip download --quiet "${platform[@]}" -d "$deps_wheels" "$project" "onnxruntime==$ORT_VERSION"
    rm -rf "$SITE" && "$PYTHON" -m pip install --quiet --no-deps "${platform[@]}" --target "$SITE" \
        $(ls "$deps_wheels"/*.whl | grep -v /edgefmnist-)
    echo "$dependencies" > "$SITE/.complete"
fi
"$PYTHON" -m pip install --quiet --no-deps "${platform[@]}" --target "$WORK/project" "$project"

run_arm64() {  # python3.11 of the arm64 root, on a Cortex-A72, with only the aarch64 wheels importable (-P: not ./edgefmnist)
    PYTHONPATH=$WORK/project:$SITE PYTHONNOUSERSITE=1 "$QEMU" -cpu cortex-a72 -L "$ROOT" "$ROOT/usr/bin/python3.11" -P "$@"
}

# A Pi 4's /sys/class/drm: card0 (v3d) and card1 (vc4) are platform devices, with no PCI `vendor` file.
pi_drm() {  # run "$@" in a private mount namespace that sees such a /sys/class/drm (over an empty /sys/class)
    unshare -m bash -c '
        mount -t tmpfs -o size=1m,mode=755 pi-sys-class /sys/class || exit 97
        mkdir -p /sys/class/drm/card0/device /sys/class/drm/card1/device /sys/class/drm/card1-HDMI-A-1
        echo "of:NgpuT<NULL>Cbrcm,2711-v3d" > /sys/class/drm/card0/device/modalias
        echo "of:NgpuT<NULL>Cbrcm,bcm2711-vc5" > /sys/class/drm/card1/device/modalias
        exec "$@"' pi-drm "$@"
}

DATA_DIR=$("$PYTHON" -c "from edgefmnist.data import find_data; print(find_data().folder)")
say "$(run_arm64 -c 'import platform, onnxruntime, numpy, cv2; print(platform.machine(), "python", platform.python_version(), "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__, "cv2", cv2.__version__)')"
run_arm64 -c 'import sys, edgefmnist.runtime; assert "torch" not in sys.modules and "onnx" not in sys.modules'

# One picture under the Pi's /sys/class/drm: the result on stdout, and not a byte on stderr.
# (sed -n, not head: head exits early, and under pipefail a writer it cut off fails the line)
first_photo=$(ls "$PHOTOS_DIR"/*/*.jpg | LC_ALL=C sort | sed -n 1p)
set +e
pi_drm env PYTHONPATH="$WORK/project:$SITE" PYTHONNOUSERSITE=1 "$QEMU" -cpu cortex-a72 -L "$ROOT" \
    "$ROOT/usr/bin/python3.11" -P -m edgefmnist.cli infer --image "$first_photo" > "$OUT/pi-drm.out" 2> "$OUT/pi-drm.err"
status=$?
set -e
[ "$status" -ne 97 ] || fail "cannot mount a private /sys/class (unshare -m needs root)"
[ "$status" -eq 0 ] || fail "infer under the Pi's /sys/class/drm exited $status: $(tail -n 3 "$OUT/pi-drm.err")"
grep -q "^$first_photo: " "$OUT/pi-drm.out" || fail "infer under the Pi's /sys/class/drm printed no result"
[ ! -s "$OUT/pi-drm.err" ] || fail "infer under the Pi's /sys/class/drm wrote to stderr: $(head -c 400 "$OUT/pi-drm.err")"
say "PASS infer --image under a Pi's /sys/class/drm (onnxruntime $ORT_VERSION): $(cat "$OUT/pi-drm.out"); stderr empty"

for model in "${MODELS[@]}"; do
    shipped=$WORK/project/edgefmnist/pretrained/$model   # the copy inside the installed wheel
    [ -f "$shipped" ] || fail "$model is not in the edgefmnist wheel"
    "$PYTHON" -m edgefmnist.cli infer --model "$shipped" --sample "0:$SAMPLES" --data-dir "$DATA_DIR" --json > "$OUT/x86-$model.json"
    run_arm64 -m edgefmnist.cli infer --model "$shipped" --sample "0:$SAMPLES" --data-dir "$DATA_DIR" --json > "$OUT/arm64-$model.json"
    run_arm64 -m edgefmnist.cli evaluate "$shipped" --data-dir "$DATA_DIR" --json > "$OUT/arm64-evaluate-$model.json"
    "$PYTHON" - "$shipped" "$OUT/x86-$model.json" "$OUT/arm64-$model.json" "$OUT/arm64-evaluate-$model.json" <<'EOF' || fail "$model"
import json, sys
from edgefmnist.contract import RECORDED_ACCURACY_TOLERANCE
from edgefmnist.runtime.metadata import read_metadata
model, x86, arm, evaluation = sys.argv[1], *(json.load(open(p)) for p in sys.argv[2:])
metadata = read_metadata(model)
same = sum(a["label"] == b["label"] for a, b in zip(x86, arm)) / len(x86)
drift = max(abs(a["probability"] - b["probability"]) for a, b in zip(x86, arm))
recorded, measured = metadata.extra["test_accuracy"], evaluation["accuracy"]
line = (f"{metadata.precision} {model.split('/')[-1]}: {len(x86)} images, labels agree {100 * same:.2f} %, "
        f"max |Δp| {drift:.1e}; evaluate on arm64 {100 * measured:.2f} % (recorded {100 * recorded:.2f} %)")
ok = len(arm) == len(x86) and abs(measured - recorded) <= RECORDED_ACCURACY_TOLERANCE
ok &= (same == 1.0 and drift <= 1e-4) if metadata.precision == "fp32" else same >= 0.995
print(("PASS " if ok else "FAIL ") + line, file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
done

# The photo path: the same photos through picture loading, GrabCut and the default model (the
# wheel's own copy on both sides: arm64 finds it as the default, x86 is pointed at the same file).
photos=()
for folder in "$PHOTOS_DIR"/*/; do
    while IFS= read -r photo; do photos+=("$photo"); done < <(ls "$folder" | LC_ALL=C sort | grep -iE '\.(jpe?g|png)$' | sed -n "1,${PHOTOS_PER_CLASS}p" | sed "s|^|$folder|")
done
[ "${#photos[@]}" -gt 0 ] || fail "no photos in $PHOTOS_DIR"
default_model=$WORK/project/edgefmnist/pretrained/$("$PYTHON" -c 'from edgefmnist.contract import DEFAULT_MODEL_NAME; print(DEFAULT_MODEL_NAME)')
image_args=(); for photo in "${photos[@]}"; do image_args+=(--image "$photo"); done
"$PYTHON" -m edgefmnist.cli infer --model "$default_model" "${image_args[@]}" --json > "$OUT/x86-photos.json" 2> "$OUT/x86-photos.log" \
    || fail "infer --image on x86: $(tail -n 1 "$OUT/x86-photos.log")"
started=$SECONDS
run_arm64 -m edgefmnist.cli infer "${image_args[@]}" --json > "$OUT/arm64-photos.json" 2> "$OUT/arm64-photos.log" \
    || fail "infer --image on arm64: $(tail -n 1 "$OUT/arm64-photos.log")"
say "infer --image on ${#photos[@]} photos took $((SECONDS - started)) s emulated"
"$PYTHON" - "$default_model" "$OUT/x86-photos.json" "$OUT/arm64-photos.json" <<'EOF' || fail "photos"
import json, sys
model, x86, arm = sys.argv[1], *(json.load(open(p)) for p in sys.argv[2:])
errors = [r for r in x86 + arm if "error" in r]
pairs = list(zip(x86, arm))
same = sum(a["image"] == b["image"] and a.get("label") == b.get("label") for a, b in pairs)
drift = max((abs(a["probability"] - b["probability"]) for a, b in pairs if a.get("label") == b.get("label")), default=0.0)
line = (f"photos ({model.split('/')[-1]}, default model): {len(x86)} photos through GrabCut, labels identical "
        f"{same}/{len(x86)} ({100 * same / max(len(x86), 1):.1f} %), max |Δp| where identical {drift:.1e}")
for a, b in pairs:
    if a.get("label") != b.get("label"):
        line += f"\n     differs: {a['image']}: x86 {a.get('label')} {a.get('probability', 0):.2f}, arm64 {b.get('label')} {b.get('probability', 0):.2f}"
ok = len(arm) == len(x86) > 0 and not errors and same >= 0.95 * len(x86)
print(("PASS " if ok else "FAIL ") + line + "".join(f"\n     error: {r['image']}: {r['error']}" for r in errors), file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
say "all ${#MODELS[@]} models and the photo path pass on emulated arm64 (Cortex-A72)"
