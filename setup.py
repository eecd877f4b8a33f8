from setuptools import find_packages, setup

setup(
    name="kerasvae",
    version="0.1.0",
    description="Variational autoencoders for Keras 3: correct math, real data, TF Serving export.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["kerasvae", "kerasvae.*"]),
    install_requires=[
        "tensorflow==2.21.*",
        "keras==3.15.*",
        "numpy>=1.26,<3",
    ],
    extras_require={
        # tensorflow-probability 0.25 imports tf-keras at import time.
        "verify": ["tensorflow-probability==0.25.0", "tf-keras==2.21.*"],
        "jax": ["jax[cpu]>=0.4.30"],
        "serving": ["tensorflow-serving-api==2.21.*", "requests>=2.31"],
        "plot": ["matplotlib>=3.8"],
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "tensorflow-probability==0.25.0",
            "tf-keras==2.21.*",
            "jax[cpu]>=0.4.30",
            "tensorflow-serving-api==2.21.*",
            "requests>=2.31",
            "matplotlib>=3.8",
            "tensorboard>=2.20",
        ],
    },
    entry_points={"console_scripts": ["kerasvae=kerasvae.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
