"""fastalex: fused Triton and C++/CUDA kernels for AlexNet's operators.

The C++/CUDA extension in csrc/ is not compiled here: fastalex/_extension.py builds it just in
time on first use with torch.utils.cpp_extension + ninja, against the torch that is running, and
caches the result (see README.md). This keeps `pip install` fast and the build matched to torch.

The sources live at the top of the repository (csrc/); a built package carries a copy of them as
fastalex/_csrc, which _extension.py looks for first. An editable install needs no copy: there
_extension.py finds the checkout's csrc/ next to the package.
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _csrc_files() -> list[Path]:
    """csrc/'s files, relative to it: what a built package carries as fastalex/_csrc."""
    src = HERE / "csrc"
    if not (src / "bindings.cpp").is_file():
        raise FileNotFoundError(f"{src} is missing: a fastalex package needs the C++/CUDA sources "
                                "(an sdist carries them through MANIFEST.in)")
    files = (p.relative_to(src) for p in src.rglob("*") if p.is_file())
    return sorted(rel for rel in files if not any(part.startswith((".", "__pycache__")) for part in rel.parts))


class BuildPyWithSources(build_py):
    """build_py that also copies csrc/ into the built package as fastalex/_csrc (wheels, `pip install .`)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # the checkout's csrc/ is used in place
            return
        dest = Path(self.build_lib) / "fastalex" / "_csrc"
        shutil.rmtree(dest, ignore_errors=True)  # no file deleted from csrc/ survives from an earlier build
        for rel in _csrc_files():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HERE / "csrc" / rel, dest / rel)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs += [str(Path(self.build_lib) / "fastalex" / "_csrc" / rel) for rel in _csrc_files()]
        return outputs


setup(
    name="fastalex",
    version="0.1.0",
    description="Fast, faithful AlexNet operators for PyTorch: LRN, overlapping max-pool, conv+ReLU",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["fastalex", "fastalex.*"]),
    include_package_data=True,
    install_requires=[
        "torch>=2.11",
        "triton>=3.6; platform_system == 'Linux'",
        "pybind11>=2.12",
        "ninja",
        "numpy",
        "tqdm",
        "pillow",  # decoding image folders for `fastalex train`
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-benchmark>=4", "matplotlib", "hypothesis>=6"],
        "plot": ["matplotlib"],
    },
    entry_points={"console_scripts": ["fastalex = fastalex.__main__:main"]},
    cmdclass={"build_py": BuildPyWithSources},
)
