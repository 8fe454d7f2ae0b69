"""imagebuild: typed recipes -> layered Dockerfiles -> built, smoke-tested JupyterHub images."""

__version__ = "0.1.0"
