"""Build of anode_native._C: CPU kernels always, CUDA kernels when a CUDA toolkit is usable.

CUDA is compiled when torch is a CUDA build and nvcc is found, or when FORCE_CUDA=1;
ANODE_NO_CUDA=1 turns it off. A GPU is never required to build: torch.cuda.is_available()
is deliberately not consulted, so GPU-less CI machines still compile the CUDA code.
"""
import glob
import os

# torch locates the toolkit from `which nvcc` when CUDA_HOME is unset, which can resolve to a
# prefix without the runtime libraries (/usr/local/bin/nvcc -> /usr/local); prefer the standard path.
if "CUDA_HOME" not in os.environ and "CUDA_PATH" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


def build_cuda() -> bool:
    if os.environ.get("ANODE_NO_CUDA", "0") == "1":
        return False
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    nvcc = CUDA_HOME and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    return torch.version.cuda is not None and bool(nvcc)


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))


def extension():
    cpp = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp") + sources("csrc/solver/*.cpp")
    include_dirs = [os.path.join(ROOT, "csrc", "include"), os.path.join(ROOT, "csrc")]
    # No FMA contraction anywhere (-ffp-contract=off for host code, --fmad=false for device
    # code): the CPU and CUDA kernels then run the shared element functions with the same
    # roundings, bit for bit, and the driver's step-size arithmetic rounds as torchdiffeq's does.
    cxx_flags = ["-O3", "-fvisibility=hidden", "-ffp-contract=off"]
    if not build_cuda():
        return CppExtension("anode_native._C", cpp, include_dirs=include_dirs, extra_compile_args={"cxx": cxx_flags})
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo", "--fmad=false", "-Xcompiler", "-ffp-contract=off"]
    return CUDAExtension(
        "anode_native._C",
        cpp + sources("csrc/cuda/*.cu"),
        include_dirs=include_dirs,
        define_macros=[("ANODE_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx_flags + ["-DANODE_WITH_CUDA"], "nvcc": nvcc_flags + ["-DANODE_WITH_CUDA"]},
    )


# ANODE_SKIP_EXT=1: package metadata only. The Makefile installs the editable package this way and
# then builds the extension in place with `build_ext --inplace`, so the objects live in build/ and
# later builds are incremental (pip's editable build would compile everything in a temporary dir).
skip_ext = os.environ.get("ANODE_SKIP_EXT", "0") == "1"

setup(
    packages=find_packages(include=["anode_native", "anode_native.*"]),
    package_data={"anode_native": ["configs/*.yaml"]},
    ext_modules=[] if skip_ext else [extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
