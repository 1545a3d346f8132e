"""vtonlab: a study kit for virtual try-on research.

Start with ``vtonlab.setup()`` (the first cell of every notebook) and ``vtonlab.get_profile()``.
"""

from vtonlab.profiles import Profile, get_profile

__version__ = "0.1.0"

__all__ = ["Profile", "get_profile", "setup", "__version__"]


def setup(seed: int = 0, *, profile: str | None = None, quiet: bool = False):
    """Seed everything, pick the device and print profile, device and versions (see :mod:`vtonlab.env`)."""
    from vtonlab.env import setup as _setup

    return _setup(seed=seed, profile=profile, quiet=quiet)
