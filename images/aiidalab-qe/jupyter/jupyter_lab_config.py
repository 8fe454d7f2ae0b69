"""`jupyter lab` (the image's standalone command) opens the AiiDAlab start page, as a hub's
single-user server does (JUPYTERHUB_DEFAULT_URL, image.toml); JupyterLab itself stays at /lab."""

c = get_config()  # noqa: F821 (provided by the config loader)
c.LabApp.default_url = "/apps/apps/home/start.ipynb"
