"""`jupyter lab` (the image's standalone command) opens the AiiDAlab start page too, as a hub's
single-user server does (ServerApp.default_url, jupyter_server_config.d/aiidalab.json); JupyterLab
itself stays at /lab."""

c = get_config()  # noqa: F821 (provided by the config loader)
c.LabApp.default_url = "/apps/apps/home/start.ipynb"
