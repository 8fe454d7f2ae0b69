"""docker-compose files: each service's image through the registry mirrors."""

from pathlib import Path

import yaml

from imagebuild.mirrors.rewrite.document import Document
from imagebuild.mirrors.rewrite.yamlnodes import as_mapping, compose, get_key, set_scalar
from imagebuild.model.mirror import MirrorProfile
from imagebuild.model.routes import rewrite_image_ref


def rewrite_compose(document: Document, profile: MirrorProfile, source: Path) -> str:
    """docker-compose.yml: the `image:` of each service (also through `<<:` merge keys)."""
    root = as_mapping(compose(document, source), "a compose file", source)
    services = as_mapping(get_key(root, "services"), "services", source)
    for _, service in services.value if services is not None else ():
        image = _service_image(as_mapping(service, "each service", source))
        if isinstance(image, yaml.ScalarNode):
            set_scalar(document, image, rewrite_image_ref(image.value, profile.registry))
    return document.text()


def _service_image(service: yaml.MappingNode | None) -> yaml.Node | None:
    image = get_key(service, "image")
    merged = get_key(service, "<<")
    if image is not None or merged is None:
        return image
    for base in merged.value if isinstance(merged, yaml.SequenceNode) else [merged]:
        if isinstance(base, yaml.MappingNode) and (found := _service_image(base)) is not None:
            return found
    return None
