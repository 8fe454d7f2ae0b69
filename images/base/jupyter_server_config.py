"""System-wide Jupyter server settings of the image (/etc/jupyter), as docker-stacks images have:
listen on every interface (IPv4 and IPv6) without opening a browser; GEN_CERT=yes serves HTTPS
with a self-signed certificate made on first use; NB_UMASK sets the server's umask."""

import os
import subprocess
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir

c = get_config()  # noqa: F821 (provided by the config loader)
c.ServerApp.ip = ""
c.ServerApp.open_browser = False
c.FileContentsManager.delete_to_trash = False  # no trash folder inside a home volume

if os.environ.get("GEN_CERT"):
    pem = Path(jupyter_data_dir()) / "notebook.pem"
    if not pem.is_file():
        pem.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
             "-subj", "/CN=jupyter-self-signed", "-keyout", str(pem), "-out", str(pem)],
            check=True, capture_output=True,
        )
        pem.chmod(0o600)
    c.ServerApp.certfile = str(pem)

if os.environ.get("NB_UMASK"):
    os.umask(int(os.environ["NB_UMASK"], 8))
