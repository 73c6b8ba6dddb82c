#!/usr/bin/env python
"""Packaging for srplugins.

The version is a static string in ``srplugins/version.py`` read here with a regular expression: no file is generated at
install time and nothing is exec'd into ``locals()`` (that trick breaks on Python 3.13, see basicsr#725).
"""
from setuptools import find_packages, setup

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, 'srplugins', 'version.py'), encoding='utf-8') as f:
        match = re.search(r"^__version__ = '([^']+)'", f.read(), re.M)
    if match is None:
        raise RuntimeError('srplugins/version.py must define __version__ = \'X.Y.Z\'')
    return match.group(1)


def read_requirements(filename='requirements.txt'):
    with open(os.path.join(HERE, filename), encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


def read_readme():
    with open(os.path.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


setup(
    name='srplugins',
    version=read_version(),
    description='Published super-resolution methods (SRGAN, BSRGAN degradation, A2N, DASR, U-Net SN / Real-ESRGAN) '
    'as BasicSR plugins',
    long_description=read_readme(),
    long_description_content_type='text/markdown',
    keywords='super-resolution, basicsr, pytorch, srgan, bsrgan, a2n, dasr, real-esrgan',
    license='Apache License 2.0',
    python_requires='>=3.9,<3.13',
    packages=find_packages(
        exclude=('options', 'datasets', 'experiments', 'results', 'tb_logger', 'wandb', 'tests', 'scripts', 'docs')),
    include_package_data=True,
    # the option files (recipes) ship inside the package; `srplugins-recipes` reads them from there
    package_data={'srplugins': ['recipes/*/*.yml', 'recipes/*/*/*.yml', 'recipes/*/*/*.md']},
    license_files=['LICENSE'],
    install_requires=read_requirements(),
    extras_require={
        'wavelets': ['pytorch_wavelets>=1.3.0', 'PyWavelets'],
        'face': ['facexlib>=0.3.0'],
        'safetensors': ['safetensors'],
        # spandrel loads ~40 architectures srplugins has no family for (SwinIR, HAT, DAT, ...); Python >= 3.10
        'spandrel': ['spandrel>=0.4.2; python_version >= "3.10"'],
        'test': [
            'pytest>=7', 'scikit-image', 'flake8', 'isort==9.0.2', 'yapf==0.43.0', 'pytorch_wavelets>=1.3.0',
            'facexlib>=0.3.0', 'spandrel>=0.4.2; python_version >= "3.10"'
        ],
    },
    entry_points={
        'console_scripts': [
            'srplugins-train = srplugins.train:main',
            'srplugins-test = srplugins.test:main',
            'srplugins-infer = srplugins.inference.cli:main',
            'srplugins-convert = srplugins.tools.convert:main',
            'srplugins-evaluate = srplugins.tools.evaluate:main',
            'srplugins-dasr-generate = srplugins.tools.dasr_generate:main',
            'srplugins-data = srplugins.tools.data:main',
            'srplugins-recipes = srplugins.tools.recipes:main',
            'srplugins-preview = srplugins.tools.preview:main',
        ],
    },
    zip_safe=False,
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Image Processing',
    ],
)
