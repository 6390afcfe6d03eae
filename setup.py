"""Only to record the commit a wheel is built from (esjax --version, results' provenance):
everything else is in pyproject.toml."""

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithCommit(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the commit from its checkout
            return
        try:
            git = ["git", "rev-parse", "--short", "HEAD"]
            here = Path(__file__).parent
            out = subprocess.run(git, capture_output=True, text=True, check=True, cwd=here)
            commit = out.stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return  # not a git checkout (an sdist): the wheel says 'unknown'
        target = Path(self.build_lib) / "esjax" / "BUILD_COMMIT"
        target.write_text(commit + "\n")


setup(cmdclass={"build_py": BuildPyWithCommit})
