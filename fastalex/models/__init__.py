"""Models: composition of fastalex's modules only, no math of their own."""
from fastalex.models.alexnet import AlexNet, alexnet, reference_alexnet
from fastalex.models.convert import convert

__all__ = ["AlexNet", "alexnet", "convert", "reference_alexnet"]
