"""The interpreter and platform an image installs Python packages for.

Resolvers on the host (mirror sync, lock) must pick the image's wheels, not the host's:
the root image's Debian suite decides which python3 and glibc the image has.
"""

import re
from dataclasses import dataclass

from imagebuild.errors import RecipeError
from imagebuild.plan import BuildPlan


def debian_suite(ref: str) -> str | None:
    """'debian:bookworm' -> 'bookworm'; None for anything imagebuild cannot bootstrap."""
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?debian:([a-z]+)", ref)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Target:
    """The interpreter and C library of an image: pip resolves for these, not for this host."""

    python: str  # the full version of the suite's python3, for environment markers
    glibc: tuple[int, int]
    machine: str = "x86_64"

    @property
    def python_version(self) -> str:
        return ".".join(self.python.split(".")[:2])

    def platforms(self) -> list[str]:
        """Every manylinux tag this glibc accepts, best first, legacy aliases beside their PEP 600 names."""
        major, newest = self.glibc
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags: list[str] = []
        for minor in range(newest, 4, -1):
            tags.append(f"manylinux_{major}_{minor}_{self.machine}")
            if minor in legacy:
                tags.append(f"{legacy[minor]}_{self.machine}")
        return [*tags, f"linux_{self.machine}"]

    def pip_options(self) -> list[str]:
        options = ["--python-version", self.python_version, "--implementation", "cp"]
        options += ["--abi", f"cp{self.python_version.replace('.', '')}"]
        for platform in self.platforms():
            options += ["--platform", platform]
        return options

    def markers(self) -> dict[str, str]:
        """PEP 508 marker values that differ from host to host; the kernel's are the host's anyway."""
        return {
            "implementation_name": "cpython",
            "implementation_version": self.python,
            "platform_python_implementation": "CPython",
            "python_full_version": self.python,
            "python_version": self.python_version,
            "os_name": "posix",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.machine,
        }

    def __str__(self) -> str:
        return f"CPython {self.python_version} on manylinux_{self.glibc[0]}_{self.glibc[1]}_{self.machine}"


DEBIAN_TARGETS = {
    "bullseye": Target(python="3.9.2", glibc=(2, 31)),
    "bookworm": Target(python="3.11.2", glibc=(2, 36)),
    "trixie": Target(python="3.13.5", glibc=(2, 41)),
}
"""Each Debian suite's python3 and glibc, which its images install wheels for."""


def image_target(item: BuildPlan) -> Target:
    """The target of an image: its root image's Debian suite decides, or, on a dockerfile recipe,
    the Python and glibc versions that recipe states."""
    bottom = item.bottom
    stack = bottom.spec.dockerfile
    if stack is not None:
        if stack.python is None or stack.glibc is None:
            raise RecipeError(
                f"dockerfile: imagebuild does not know which Python the image of '{bottom.name}' runs",
                path=bottom.path,
                hint="set dockerfile.python and dockerfile.glibc (e.g. python = \"3.11.2\", glibc = \"2.36\"), "
                "as `python -V` and `ldd --version` print them in that image",
            )
        major, minor = stack.glibc.split(".")
        return Target(python=stack.python, glibc=(int(major), int(minor)))
    suite = debian_suite(item.root_image)
    if suite not in DEBIAN_TARGETS:
        raise RecipeError(
            f"root: imagebuild does not know which Python '{item.root_image}' runs",
            path=bottom.path,
            hint=f"sync knows the Debian suites {', '.join(sorted(DEBIAN_TARGETS))}",
        )
    return DEBIAN_TARGETS[suite]
