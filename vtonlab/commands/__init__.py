"""Sub-commands of ``python -m vtonlab``: each module has ``register(subparsers)``."""
