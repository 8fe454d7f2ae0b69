"""Step 12, hub: a JupyterHub (DockerSpawner, PostgreSQL) that offers exactly the published tags
an admin selects, run with Compose from images imagebuild builds itself (no Docker Hub).

- `settings`: the files of a hub folder (hub.toml, images.toml, .env) as typed models;
- `folder`: `hub init` and `hub select` write them;
- `compose`: the compose file rendered from hub.toml, and the Compose program that runs it;
- `lifecycle`: `hub up|down|status|logs` (images pulled or built, waiting for the hub to answer);
- `z2jh`: the same hub as Zero-to-JupyterHub values, for Kubernetes.
"""
