"""1-bit building blocks, the DARTS search space, supernets, search methods and final networks.

Importing the package registers the built-in backbones (``backbones.zoo``)."""
from backbones import zoo as _zoo  # noqa: F401  (registers nas, bireal_resnet18, the published cells)
