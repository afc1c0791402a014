"""The package list, found rather than written by hand (the rest of the metadata is in setup.cfg): every package
under optnets/, and the recipes/ folder, which setup.cfg's package_dir installs as optnets.recipes."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=['optnets', 'optnets.*']) + ['optnets.recipes'])
