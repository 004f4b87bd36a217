"""fastalex: fused Triton and C++/CUDA kernels for AlexNet's operators.

The C++/CUDA extension in csrc/ is not compiled here: fastalex/_extension.py builds it just in
time on first use with torch.utils.cpp_extension + ninja, against the torch that is running, and
caches the result (see README.md). This keeps `pip install` fast and the build matched to torch.
"""
from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="fastalex",
    version="0.1.0",
    description="Fast, faithful AlexNet operators for PyTorch: LRN, overlapping max-pool, conv+ReLU",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
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
)
