"""The paper's data augmentation as batched tensor transforms (GPU or CPU, uint8 or float).

Krizhevsky, Sutskever & Hinton (2012), sections 2 and 4.1:

* training: random 224 x 224 crops of the 256 x 256 images and their horizontal reflections
  (:class:`RandomCropFlip`), plus "fancy PCA" colour noise along the principal components of the
  RGB pixel values (:class:`PCALighting`, :func:`compute_pca_lighting`);
* test: the four corner and the centre crops and their reflections, predictions averaged over the
  ten (:class:`TenCrop`, :func:`average_ten_crop`);
* preprocessing: rescale to 256 on the shorter side and centre-crop (:func:`resize_and_center_crop`),
  subtract the mean image of the training set (:func:`compute_mean_image`, :class:`Normalize`).

Every transform takes a whole batch (N, C, H, W) on any device and runs as a few batched kernels: no
loop over images in Python and no host synchronisation, so they can sit in a GPU input pipeline.
Random transforms split into ``sample`` (draw the parameters from a :class:`torch.Generator`) and
``apply`` (use them), so a run is reproducible from a seed and the same draws can be replayed.

Convention: a float image is in [0, 1]; uint8 is converted by / 255 wherever a transform must produce
float. The PCA constants below are on that scale.
"""
from fastalex.transforms.color import IMAGENET_EIGVAL, IMAGENET_EIGVEC, PCALighting, compute_pca_lighting
from fastalex.transforms.crop import CropFlipParams, RandomCropFlip, TenCrop, average_ten_crop
from fastalex.transforms.normalize import (IMAGENET_MEAN, IMAGENET_STD, Normalize, compute_mean_image,
                                           resize_and_center_crop)

__all__ = [
    "IMAGENET_EIGVAL", "IMAGENET_EIGVEC", "IMAGENET_MEAN", "IMAGENET_STD",
    "CropFlipParams", "RandomCropFlip", "TenCrop", "average_ten_crop",
    "PCALighting", "compute_pca_lighting", "compute_mean_image", "Normalize", "resize_and_center_crop",
]
